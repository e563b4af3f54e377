"""Write docs/algorithms/: one HTML page per Processing algorithm, and an index.

Each page is what the algorithm's Help button opens (``helpUrl``): its help text, every
parameter with its type and default, its outputs, and the ``qgis_process`` line that runs it.
They are made from the algorithms themselves, so they cannot drift from the dialogs; a test
renders them again and compares. The plugin ships the folder (``scripts/package.py``), so Help
works offline. Run after changing an algorithm's help or parameters:
``.venv/bin/python scripts/help_pages.py`` (QGIS's Python).
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "docs" / "algorithms"

STYLE = (
    "body{font-family:sans-serif;max-width:52em;margin:1.5em auto;padding:0 1em;"
    "line-height:1.45;color:#222}"
    "table{border-collapse:collapse;width:100%;font-size:.92em}"
    "th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}code,pre{background:#f6f6f6;font-size:.92em}"
    "pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}nav{font-size:.9em}"
)


def _is(parameter, flag_name: str) -> bool:
    """Whether a parameter is optional (``"optional"``) or hidden (``"hidden"``)."""
    from mus_qgis.bridge import qgis_enums

    return bool(parameter.flags() & getattr(qgis_enums, f"PARAMETER_{flag_name.upper()}"))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)} · mus_qgis</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _paragraphs(text: str) -> str:
    return "\n".join(
        f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>"
        for part in text.split("\n\n")
        if part.strip()
    )


def _default(parameter) -> str:
    value = parameter.defaultValue()
    if value is None or value == "":
        return ""
    if parameter.type() == "enum":
        options = parameter.options()
        chosen = value if isinstance(value, list) else [value]
        names = [options[int(i)] for i in chosen if str(i).isdigit() and int(i) < len(options)]
        return ", ".join(names)
    return str(value)


def _choices(parameter) -> str:
    if parameter.type() != "enum":
        return ""
    return "<br>".join(
        f"{index}: {html.escape(option)}" for index, option in enumerate(parameter.options())
    )


def _command(algorithm) -> str:
    required = [
        p
        for p in algorithm.parameterDefinitions()
        if not _is(p, "optional") and not _is(p, "hidden") and p.defaultValue() in (None, "")
    ]
    words = [f"qgis_process run {algorithm.id()} --"]
    words += [f"{p.name()}=…" for p in required]
    return " ".join(words)  # those without a default: the others may be left out


def _described(parameter) -> str:
    """The parameter's label, and under it its help (the dialog's tooltip)."""
    label = html.escape(parameter.description())
    help_text = parameter.help()
    return f"{label}<br><small>{html.escape(help_text)}</small>" if help_text else label


def algorithm_page(algorithm) -> str:
    """The help page of one algorithm."""
    rows = []
    for parameter in algorithm.parameterDefinitions():
        if _is(parameter, "hidden"):
            continue
        optional = "optional" if _is(parameter, "optional") else "required"
        rows.append(
            "<tr>"
            f"<td>{_described(parameter)}</td>"
            f"<td><code>{html.escape(parameter.name())}</code></td>"
            f"<td>{html.escape(parameter.type())}, {optional}</td>"
            f"<td>{html.escape(_default(parameter))}</td>"
            f"<td>{_choices(parameter)}</td>"
            "</tr>"
        )
    outputs = [
        "<tr>"
        f"<td>{html.escape(output.description())}</td>"
        f"<td><code>{html.escape(output.name())}</code></td>"
        f"<td>{html.escape(output.type())}</td>"
        "</tr>"
        for output in algorithm.outputDefinitions()
    ]
    body = (
        "<nav><a href='index.html'>All algorithms</a></nav>\n"
        f"<h1>{html.escape(algorithm.displayName())}</h1>\n"
        f"<p><code>{html.escape(algorithm.id())}</code> · {html.escape(algorithm.group())}</p>\n"
        f"{_paragraphs(algorithm.shortHelpString() or algorithm.shortDescription())}\n"
        "<h2>Parameters</h2>\n<table>\n"
        "<tr><th>In the dialog</th><th>Name</th><th>Type</th><th>Default</th>"
        "<th>Choices (by number)</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
        "<h2>Outputs</h2>\n<table>\n<tr><th>What</th><th>Name</th><th>Type</th></tr>\n"
        + "\n".join(outputs)
        + "\n</table>\n"
        "<h2>From the command line</h2>\n"
        f"<pre>{html.escape(_command(algorithm))}</pre>\n"
        "<p><code>qgis_process help "
        f"{html.escape(algorithm.id())}</code> lists the same parameters; in Python, "
        f'<code>processing.run("{html.escape(algorithm.id())}", {{…}})</code>.</p>'
    )
    return _page(algorithm.displayName(), body)


def index_page(algorithms) -> str:
    """The list of every algorithm, by toolbox group."""
    groups: dict[str, list] = {}
    for algorithm in algorithms:
        groups.setdefault(algorithm.group(), []).append(algorithm)
    sections = []
    for group in sorted(groups):
        items = "\n".join(
            f"<li><a href='{page_name(a)}'>{html.escape(a.displayName())}</a>: "
            f"{html.escape(a.shortDescription())}</li>"
            for a in sorted(groups[group], key=lambda a: a.displayName())
        )
        sections.append(f"<h2>{html.escape(group)}</h2>\n<ul>\n{items}\n</ul>")
    body = (
        "<h1>Multimodal Urban Studies: the algorithms</h1>\n"
        "<p>Each page is the Help of one algorithm of the Processing Toolbox's "
        "<em>Multimodal Urban Studies</em> provider.</p>\n" + "\n".join(sections)
    )
    return _page("The algorithms", body)


def page_name(algorithm) -> str:
    from mus_qgis.shared.resources import help_page_name

    return help_page_name(algorithm.name())


def rendered_pages(provider) -> dict[str, str]:
    """File name → HTML for every algorithm of the provider, and the index."""
    algorithms = [a for a in provider.algorithms() if a.name() != "pipeline"]
    pages = {page_name(a): algorithm_page(a) for a in algorithms}
    pipeline = [a for a in provider.algorithms() if a.name() == "pipeline"]
    for model in pipeline:
        body = (
            "<nav><a href='index.html'>All algorithms</a></nav>\n"
            f"<h1>{html.escape(model.displayName())}</h1>\n"
            f"<p><code>{html.escape(model.id())}</code> · a Processing model</p>\n"
            f"{_paragraphs(model.shortHelpString())}\n"
            "<p>Open it in the Graphical Modeler (right-click it in the Processing Toolbox ▸ "
            "Edit Model) to see each step and to change or extend the study.</p>\n"
            "<h2>Parameters</h2>\n<ul>\n"
            + "\n".join(
                f"<li>{html.escape(p.description())} (<code>{html.escape(p.name())}</code>)</li>"
                for p in model.parameterDefinitions()
            )
            + "\n</ul>"
        )
        pages[page_name(model)] = _page(model.displayName(), body)
    pages["index.html"] = index_page(provider.algorithms())
    return pages


def main() -> None:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from mus_qgis.processing.provider import MusProvider

    provider = MusProvider()
    if not QgsApplication.processingRegistry().addProvider(provider):
        raise SystemExit("the mus provider could not be registered")
    pages = rendered_pages(provider)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("*.html"):
        if old.name not in pages:
            old.unlink()
    for name, text in pages.items():
        (OUTPUT / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} pages to {OUTPUT}")
    QgsApplication.processingRegistry().removeProvider(provider)  # noqa: QGS202 (exiting)
    app.exitQgis()


if __name__ == "__main__":
    main()
