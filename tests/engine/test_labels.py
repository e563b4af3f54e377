"""Label sets: the shipped data, users' files, and every way a set or template can be wrong."""

from __future__ import annotations

import csv

import pytest

from mus_qgis.shared.errors import LabelSetError
from mus_qgis.shared.labels import (
    Label,
    LabelSet,
    builtin_label_set,
    builtin_label_sets,
    generated_palette,
    parse_templates,
    read_label_file,
)
from tests.conftest import SHARED_DATA


def test_every_builtin_set_loads_with_templates_and_colours():
    names = [entry.name for entry in builtin_label_sets()]
    assert names[:2] == ["urban_atlas_2018", "corine_land_cover"]
    for name in names:
        label_set = builtin_label_set(name)
        assert len(label_set) >= 5
        assert all("{label}" in t for t in label_set.templates)
        colours = label_set.colours()
        assert len(colours) == len(label_set)
        assert len(set(colours)) == len(colours), name


def test_urban_atlas_set_matches_the_official_nomenclature():
    label_set = builtin_label_set("urban_atlas_2018")
    nomenclature = SHARED_DATA / "labels" / "urban_atlas_2018_nomenclature.csv"
    with nomenclature.open(encoding="utf-8") as handle:
        official = list(csv.DictReader(handle))
    assert len(label_set) == 27
    assert [lab.code for lab in label_set.labels] == [row["code_2018"] for row in official]
    assert [lab.colour.lower() for lab in label_set.labels] == [r["hex"] for r in official]
    # The prompt wording drops the sealing degree, which means nothing to a text encoder.
    assert label_set.prompts()[0][0] == "a panoramic street image of continuous urban fabric"


def test_reference_study_sets_have_what_the_study_ranked():
    corine = builtin_label_set("corine_land_cover")
    assert len(corine) == 44 and corine.labels[0].code == "111"
    europe = builtin_label_set("european_capitals").texts
    world = builtin_label_set("world_capitals").texts
    assert {"Rome", "Vatican City"} <= set(europe) and {"Rome", "Vatican City"} <= set(world)
    assert len(world) > 240
    provinces = builtin_label_set("italian_provinces").texts
    assert "Roma" in provinces and len(provinces) == 110
    architects = builtin_label_set("italian_architects")
    assert len(architects) >= 211
    assert {"Francesco Borromini", "Gian Lorenzo Bernini", "Andrea Palladio"} <= set(
        architects.texts
    )
    dated = [lab for lab in architects.labels if lab.extra.get("born")]
    assert len(dated) >= 211
    assert architects.prompts()[0][0].startswith("a photo of a street designed by ")
    for indicator in (
        "sustainability",
        "resiliency",
        "mobility",
        "social_inclusion",
        "urban_innovation",
    ):
        levels = builtin_label_set(f"planning_{indicator}")
        assert [lab.code for lab in levels.labels] == ["1", "2", "3", "4", "5"]
        assert levels.texts[0].startswith("very low") and levels.texts[-1].startswith("very high")


def test_world_capitals_sharing_a_name_stay_distinct_labels_with_the_same_prompt():
    world = builtin_label_set("world_capitals")
    kingstons = [lab for lab in world.labels if lab.prompt_text == "Kingston"]
    assert len(kingstons) == 2 and kingstons[0].text != kingstons[1].text


def test_text_file_one_label_a_line(tmp_path):
    path = tmp_path / "streets.txt"
    path.write_text("# my labels\nRome\n\n  Paris  \nBerlin\n", encoding="utf-8")
    label_set = read_label_file(path, ["a photo of {label}"])
    assert label_set.texts == ["Rome", "Paris", "Berlin"]
    assert label_set.prompts()[1] == ["a photo of Paris"]


@pytest.mark.parametrize(
    "text",
    [
        "label,code,colour\nRome,1,#ff0000\nParis,2,#00ff00\n",
        "Label;Code;Color\nRome;1;#ff0000\nParis;2;#00ff00\n",
        "Rome,1,#ff0000\nParis,2,#00ff00\n",
    ],
)
def test_csv_with_codes_and_colours(tmp_path, text):
    path = tmp_path / "cities.csv"
    path.write_text(text, encoding="utf-8")
    label_set = read_label_file(path)
    assert label_set.texts == ["Rome", "Paris"]
    assert [lab.code for lab in label_set.labels] == ["1", "2"]
    assert label_set.colours() == ["#ff0000", "#00ff00"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("# nothing\n\n", "empty"),
        ("Rome\n", "single label"),
        ("Rome\nParis\nrome \n", "repeats"),
    ],
)
def test_bad_label_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LabelSetError, match=message):
        read_label_file(path)


def test_missing_or_binary_label_file(tmp_path):
    with pytest.raises(LabelSetError, match="does not exist"):
        read_label_file(tmp_path / "nope.txt")
    binary = tmp_path / "labels.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(LabelSetError, match="UTF-8"):
        read_label_file(binary)


def test_bad_colour_is_refused():
    with pytest.raises(LabelSetError, match="#rrggbb"):
        LabelSet("x", (Label("a", colour="red"), Label("b")), ("{label}",))


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ([], "at least one"),
        (["a photo of a street"], r"\{label\}"),
        (["a panoramic street image of {city}"], r"\{city\}"),
        (["{label} designed by {architect}"], r"\{architect\}"),
    ],
)
def test_bad_templates_get_clear_errors(templates, message):
    with pytest.raises(LabelSetError, match=message):
        builtin_label_set("european_capitals", templates) if templates else parse_templates("")


def test_templates_from_text_and_hash_follows_what_changes_scores():
    templates = parse_templates("a photo of {label}\n\n  a street in {label}  \n")
    assert templates == ("a photo of {label}", "a street in {label}")
    base = builtin_label_set("european_capitals")
    assert base.content_hash() == builtin_label_set("european_capitals").content_hash()
    assert base.content_hash() != base.with_templates(templates).content_hash()


def test_unknown_builtin_set_lists_the_known_ones():
    with pytest.raises(LabelSetError, match="urban_atlas_2018"):
        builtin_label_set("no_such_set")


def test_generated_palette_is_stable_and_distinct():
    assert generated_palette(50) == generated_palette(50)
    assert len(set(generated_palette(50))) == 50
