"""Rebuild the label sets derived from ../shared/data (official legends and capital lists).

The hand-assembled sets (planning indicators, Italian architects) are edited directly in
resources/labels. Run from the project root: ``python scripts/build_label_sets.py``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "resources" / "labels"
FIELDS = ["label", "code", "colour", "prompt", "note"]


def _write(name: str, rows: list[dict[str, str]]) -> None:
    with (OUT / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in FIELDS})


def _plain_prompt(official_class: str) -> str:
    # "Continuous Urban fabric (S.L. > 80%)" reads badly in a prompt; the sealing degree goes.
    text = re.sub(r"\s*\(.*?\)", "", official_class).strip().lower()
    return text.replace("orchads", "orchards").replace("vegetations", "vegetation")


def urban_atlas() -> None:
    with (SHARED / "labels" / "urban_atlas_2018_nomenclature.csv").open(encoding="utf-8") as h:
        rows = [
            {
                "label": r["class_2018"],
                "code": r["code_2018"],
                "colour": r["hex"],
                "prompt": _plain_prompt(r["class_2018"]),
            }
            for r in csv.DictReader(h)
        ]
    _write("urban_atlas_2018.csv", rows)


def corine() -> None:
    path = SHARED / "landcover" / "corine" / "clc_legend.csv"
    with path.open(encoding="utf-8") as handle:
        rows = []
        for r in csv.DictReader(handle, delimiter=";"):
            red, green, blue = (int(v) for v in r["RGB"].split("-"))
            rows.append(
                {
                    "label": r["LABEL3"],
                    "code": r["CLC_CODE"],
                    "colour": f"#{red:02x}{green:02x}{blue:02x}",
                    "prompt": r["LABEL3"].lower(),
                    "note": f"{r['LABEL1']} / {r['LABEL2']}",
                }
            )
    _write("corine_land_cover.csv", rows)


def provinces() -> None:
    path = SHARED / "labels" / "italian_provinces_lw_comuni.csv"
    with path.open(encoding="utf-8") as handle:
        rows = [
            {"label": r["name_it"], "code": r["iso"], "note": f"ISTAT {r['istat']}"}
            for r in csv.DictReader(handle, delimiter=";")
        ]
    _write("italian_provinces.csv", rows)


def capitals(source: str, target: str, independent_only: bool) -> None:
    with (SHARED / "labels" / source).open(encoding="utf-8") as handle:
        kept = [
            r
            for r in csv.DictReader(handle)
            if r["capital"] and (r["independent"] == "True" or not independent_only)
        ]
    names = [r["capital"] for r in kept]
    rows = []
    for r in kept:
        # Two capitals share a name (Kingston): the label names the country, the prompt does not.
        shared_name = names.count(r["capital"]) > 1
        label = f"{r['capital']} ({r['country']})" if shared_name else r["capital"]
        prompt = r["capital"] if shared_name else ""
        rows.append({"label": label, "code": r["cca3"], "prompt": prompt, "note": r["country"]})
    _write(target, rows)


if __name__ == "__main__":
    urban_atlas()
    corine()
    provinces()
    capitals("european_capitals_from_mledoze.csv", "european_capitals.csv", True)
    capitals("world_capitals_from_mledoze.csv", "world_capitals.csv", False)
