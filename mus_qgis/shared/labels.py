"""Label sets: labels with optional codes, colours and prompt wording, plus prompt templates.

Built-in sets are data files in ``resources/labels`` listed in ``label_sets.json``; users bring
their own as a text file (one label a line) or a CSV (label, code, colour, prompt).

QGIS imports this module, so it runs on every Python QGIS ships, 3.9 included.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import LabelSetError
from .resources import resource_path

PLACEHOLDER = "{label}"
DEFAULT_TEMPLATES = ("a panoramic street image of {label}",)
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Label:
    text: str
    code: str = ""
    colour: str = ""
    prompt: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt_text(self) -> str:
        """What goes into the templates: the label, or its own wording when it has one."""
        return self.prompt or self.text


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[Label, ...]
    templates: tuple[str, ...]
    title: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        validate_labels(self.labels)
        validate_templates(self.templates)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def texts(self) -> list[str]:
        return [label.text for label in self.labels]

    def prompts(self) -> list[list[str]]:
        """For each label, its prompts: one per template."""
        return [
            [template.replace(PLACEHOLDER, label.prompt_text) for template in self.templates]
            for label in self.labels
        ]

    def colours(self) -> list[str]:
        """Each label's colour; labels without one get distinct, stable colours."""
        generated = iter(generated_palette(sum(1 for label in self.labels if not label.colour)))
        return [label.colour or next(generated) for label in self.labels]

    def with_templates(self, templates: Sequence[str]) -> LabelSet:
        return LabelSet(self.name, self.labels, tuple(templates), self.title, self.source)

    def content_hash(self) -> str:
        """A short hash of what changes the scores: label wording, order and templates."""
        payload = json.dumps(
            {"labels": [[lab.text, lab.prompt_text] for lab in self.labels], "t": self.templates},
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def validate_labels(labels: Sequence[Label]) -> None:
    if not labels:
        raise LabelSetError("The label set is empty: give at least two labels.")
    if len(labels) < 2:
        raise LabelSetError(
            f"The label set has a single label ({labels[0].text!r}): a classification "
            "needs at least two."
        )
    seen: dict[str, str] = {}
    duplicates = []
    for label in labels:
        if not label.text.strip():
            raise LabelSetError("The label set contains an empty label.")
        key = label.text.strip().casefold()
        if key in seen:
            duplicates.append(label.text)
        seen[key] = label.text
        if label.colour and not _COLOUR.match(label.colour):
            raise LabelSetError(
                f"Label {label.text!r} has the colour {label.colour!r}; write it as #rrggbb."
            )
    if duplicates:
        shown = ", ".join(repr(d) for d in sorted(set(duplicates)))
        raise LabelSetError(f"The label set repeats these labels: {shown}. Each must be unique.")


def validate_templates(templates: Sequence[str]) -> None:
    if not templates:
        raise LabelSetError(f"Give at least one prompt template containing {PLACEHOLDER}.")
    for template in templates:
        fields = _FIELD.findall(template)
        others = [f"{{{name}}}" for name in fields if name != "label"]
        if others or PLACEHOLDER not in template:
            found = f" (it has {', '.join(others)})" if others else ""
            raise LabelSetError(
                f"The prompt template {template!r} must contain {PLACEHOLDER} exactly where "
                f"the label goes, and no other {{…}} field{found}."
            )


def parse_templates(text: str | Iterable[str]) -> tuple[str, ...]:
    """Templates from a multi-line string (one a line) or a list; blank lines are dropped."""
    lines = text.splitlines() if isinstance(text, str) else list(text)
    templates = tuple(line.strip() for line in lines if line.strip())
    validate_templates(templates)
    return templates


def generated_palette(count: int) -> list[str]:
    """``count`` well separated colours (golden-angle hues), the same for the same count."""
    colours = []
    for index in range(count):
        hue = (index * 0.618033988749895) % 1.0
        value = 0.85 if index % 2 == 0 else 0.65
        red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append(f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}")
    return colours


@dataclass(frozen=True)
class BuiltinLabelSet:
    name: str
    title: str
    file: str
    templates: tuple[str, ...]
    source: str


@lru_cache(maxsize=1)
def builtin_label_sets() -> tuple[BuiltinLabelSet, ...]:
    """The shipped label sets, in registry order (Processing stores an index into it)."""
    registry = json.loads(resource_path("labels", "label_sets.json").read_text(encoding="utf-8"))
    return tuple(
        BuiltinLabelSet(
            name, entry["title"], entry["file"], tuple(entry["templates"]), entry["source"]
        )
        for name, entry in registry.items()
        if name != "_about"  # the registry's own note, not a set
    )


def builtin_label_set(name: str, templates: Sequence[str] | None = None) -> LabelSet:
    """A shipped label set by name, with its own templates unless others are given."""
    for entry in builtin_label_sets():
        if entry.name == name:
            labels = _read_csv(resource_path("labels", entry.file))
            return LabelSet(
                entry.name, labels, tuple(templates or entry.templates), entry.title, entry.source
            )
    known = ", ".join(entry.name for entry in builtin_label_sets())
    raise LabelSetError(f"No built-in label set is called {name!r}. Known sets: {known}.")


def read_label_file(path: str | Path, templates: Sequence[str] | None = None) -> LabelSet:
    """A user's label set: a CSV with a ``label`` column or a text file with one label a line.

    Every problem is an error naming the file and, where there is one, the line.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise LabelSetError(f"The label file {path} {what}.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelSetError(
            f"The label file {path} cannot be read ({exc.strerror or exc})."
        ) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelSetError(
            f"The label file {path} is not UTF-8 text (line {line}: {exc.reason}): save it as "
            "UTF-8."
        ) from exc
    if path.suffix.lower() in {".csv", ".tsv"}:
        numbered = _csv_labels(text)
    else:
        numbered = [
            (number, Label(line.strip()))
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    _check_numbered(path, numbered)
    labels = tuple(label for _, label in numbered)
    return LabelSet(path.stem, labels, tuple(templates or DEFAULT_TEMPLATES), path.stem, str(path))


def _check_numbered(path: Path, numbered: list[tuple[int, Label]]) -> None:
    """The label set checks, each naming the file and line."""
    if not numbered:
        raise LabelSetError(
            f"The label file {path} is empty (it holds no label): write one label a line (a "
            "CSV needs a 'label' column), at least two."
        )
    if len(numbered) < 2:
        line, label = numbered[0]
        raise LabelSetError(
            f"The label file {path} has a single label ({label.text!r}, line {line}): a "
            "classification needs at least two."
        )
    lines_of: dict[str, list[int]] = {}
    for line, label in numbered:
        if not label.text.strip():
            raise LabelSetError(f"The label file {path} has no label text on line {line}.")
        if label.colour and not _COLOUR.match(label.colour):
            raise LabelSetError(
                f"The label file {path}, line {line}: label {label.text!r} has the colour "
                f"{label.colour!r}; write it as #rrggbb."
            )
        lines_of.setdefault(label.text.strip().casefold(), []).append(line)
    repeated = [
        f"{label.text!r} (lines {', '.join(map(str, lines_of[key]))})"
        for line, label in numbered
        # Parenthesised: Python 3.9 allows no bare := inside [ ].
        if len(lines_of[(key := label.text.strip().casefold())]) > 1 and lines_of[key][0] == line
    ]
    if repeated:
        raise LabelSetError(
            f"The label file {path} repeats {'; '.join(repeated)}: each label must be unique "
            "(letter case aside)."
        )


def _read_csv(path: Path) -> tuple[Label, ...]:
    return tuple(label for _, label in _csv_labels(path.read_text(encoding="utf-8-sig")))


def _csv_labels(text: str) -> list[tuple[int, Label]]:
    """(line number, label) for each row of a label CSV."""
    if not text.strip():
        return []
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(text.splitlines(), dialect))
    header = [name.strip().lower() for name in rows[0]]
    if "label" not in header:
        # A headerless CSV: label, code, colour in that order.
        header = ["label", "code", "colour", "prompt"][: len(rows[0])]
        first = 0
    else:
        first = 1
    labels = []
    for number, row in enumerate(rows[first:], start=first + 1):
        if not any(cell.strip() for cell in row):
            continue
        values = {name: cell.strip() for name, cell in zip(header, row)}
        known = {key: values.pop(key, "") for key in ("label", "code", "colour", "prompt")}
        known["colour"] = known["colour"] or values.pop("color", "")
        labels.append(
            (
                number,
                Label(known["label"], known["code"], known["colour"], known["prompt"], values),
            )
        )
    return labels


# -- a label set's years (the periods' reading) and groups (the ranking's) -------------------
YEAR_COLUMNS = (("year",), ("born", "died"), ("start", "end"))
# A label with a birth year and no death year (a living architect) is dated to the middle of an
# 80-year life: born + 40.
HALF_LIFE_YEARS = 40


def year_of(value) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def label_years(label_set) -> list[float]:
    """Each label's year (NaN where the set gives none); a set with no year is refused."""
    years = []
    for label in label_set.labels:
        year = math.nan
        for columns in YEAR_COLUMNS:
            values = [year_of(label.extra.get(column)) for column in columns]
            if all(not math.isnan(v) for v in values):
                year = sum(values) / len(values)
                break
        born = year_of(label.extra.get("born"))
        if math.isnan(year) and not math.isnan(born):
            year = born + HALF_LIFE_YEARS
        years.append(year)
    if all(math.isnan(y) for y in years):
        raise LabelSetError(
            f"The label set {label_set.title or label_set.name!r} has no dates: give a set with a "
            "'year' column, or 'born' and 'died', or 'start' and 'end' (e.g. the Italian "
            "architects)."
        )
    return years


def parse_groups(lines: Iterable[str]) -> dict[str, list[str]]:
    """Groups written one a line as ``name = label; label`` (blank lines skipped)."""
    groups = {}
    for line in lines:
        if not line.strip():
            continue
        if "=" not in line:
            raise LabelSetError(f"Write each group as 'name = label; label', not {line.strip()!r}.")
        name, members = line.split("=", 1)
        groups[name.strip()] = [m.strip() for m in members.split(";") if m.strip()]
    return groups
