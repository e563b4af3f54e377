"""The precision setting: bf16 (and fp16 where a GPU runs it) beside exact fp32, stored apart,
stated in the run settings, and close to fp32 by a measured bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mus_qgis.engine.clip.classify import classify_locations, embedding_cache_dir
from mus_qgis.engine.clip.embedding import Location
from mus_qgis.engine.clip.fidelity import precision_fidelity
from mus_qgis.engine.clip.models import load_model, precision_of
from mus_qgis.shared.errors import ModelError
from mus_qgis.shared.labels import builtin_label_set
from tests.conftest import AREZZO_PHOTOS


def test_bf16_is_stored_apart_stated_and_within_the_measured_bound(tiny_spec, tmp_path):
    label_set = builtin_label_set("urban_atlas_2018")
    fidelity = precision_fidelity(
        [str(p) for p in AREZZO_PHOTOS], tiny_spec, "bf16", [label_set], cache_dir=tmp_path
    )
    # bfloat16 keeps 8 bits of mantissa: the tiny model's embeddings stay close, not equal.
    assert 0.99 < fidelity.smallest_cosine < 1.0
    bound = fidelity.label_sets[0].largest_score_difference
    assert 0.0 < bound < 0.05
    locations = [Location([str(path)]) for path in AREZZO_PHOTOS]
    runs = {
        precision: classify_locations(
            locations, label_set, replace(tiny_spec, precision=precision), cache_dir=tmp_path
        )
        for precision in ("fp32", "bf16")
    }
    exact, faster = runs["fp32"], runs["bf16"]
    # Two model identities, two stores: the embeddings of the two formats never mix.
    assert faster.model.identity == f"{exact.model.identity}@bf16"
    stores = {path.name for path in embedding_cache_dir(tmp_path).rglob("*") if path.is_dir()}
    assert len([name for name in stores if "bf16" in name]) >= 1
    assert exact.metadata["precision"] == "float32" and faster.metadata["precision"] == "bfloat16"
    assert precision_of(faster.metadata) == "bf16" and precision_of(exact.metadata) == "fp32"
    assert precision_of({}) == "fp32"  # a layer classified before the setting existed
    # Each photo is one view (a photo is used whole): its probabilities are that view's.
    difference = np.nanmax(np.abs(exact.scores.all_probability - faster.scores.all_probability))
    assert 0.0 < difference <= bound + 1e-6


def test_fp16_on_the_cpu_and_unknown_formats_are_refused_with_what_to_choose(tiny_spec):
    with pytest.raises(ModelError, match=r"fp16 runs on a GPU .* choose bf16"):
        load_model(replace(tiny_spec, precision="fp16"))
    with pytest.raises(ModelError, match="Unknown precision 'int8'; use one of fp32, bf16, fp16"):
        load_model(replace(tiny_spec, precision="int8"))


def test_the_speed_of_bf16_is_measured_once_per_computer_and_said(tmp_path):
    import json

    from mus_qgis.engine.clip.precision_speed import (
        RECORD_NAME,
        precision_advice,
        precision_speed,
    )
    from tests.conftest import TINY_MODEL_CONFIG

    record = precision_speed(tmp_path, model=str(TINY_MODEL_CONFIG))
    assert record["bf16_speedup"] > 0 and 0.99 < record["smallest_cosine"] <= 1.0 + 1e-6
    assert record["model"] == "mus-tiny-vit" and record["amx"] in (True, False, None)
    path = tmp_path / RECORD_NAME
    assert json.loads(path.read_text(encoding="utf-8")) == record
    # Measured once: the next call reads the record (a changed one proves it was read).
    path.write_text(json.dumps({**record, "bf16_speedup": 5.0}), encoding="utf-8")
    fast = precision_speed(tmp_path)
    assert fast["bf16_speedup"] == 5.0
    assert precision_advice(fast).startswith("bf16 runs 5.0× as fast as fp32 here")
    slow = {**record, "bf16_speedup": 0.31, "amx": False}
    assert precision_advice(slow).startswith(
        "bf16 runs at 0.31× the speed of fp32 here (this CPU has no AMX): keep fp32"
    )
    # Another computer's (or another torch's) record is not this one's.
    path.write_text(json.dumps({**record, "key": "another CPU"}), encoding="utf-8")
    assert precision_speed(tmp_path, measure=False) == {}
    assert precision_advice({}) == "bf16 against fp32: not measured."


def test_reports_name_a_precision_other_than_fp32():
    from mus_qgis.shared.reports import model_words

    settings = {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "precision": "float32"}
    assert model_words(settings) == "ViT-B-32, laion2b_s34b_b79k weights"
    assert model_words({**settings, "precision": "bfloat16"}) == (
        "ViT-B-32, laion2b_s34b_b79k weights, in bfloat16"
    )
    assert model_words({"model": "ViT-B-32"}) == "ViT-B-32, ? weights"  # before the setting
