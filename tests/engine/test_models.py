"""Model choice: devices, unknown names and tags, offline without weights, bad checkpoints."""

from __future__ import annotations

import time

import open_clip
import pytest
import torch

from mus_qgis.engine.clip.models import ModelSpec, load_model, resolve_device
from mus_qgis.shared.errors import ModelError
from tests.conftest import TINY_MODEL_CONFIG


def test_auto_device_and_unavailable_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ModelError, match="Unknown device"):
        resolve_device("tpu")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="ViT-B-32"):
        load_model(ModelSpec("ViT-B-23", "", "", "cpu"))


def test_unknown_tag_lists_the_models_tags():
    with pytest.raises(ModelError, match="laion2b_s34b_b79k"):
        load_model(ModelSpec("ViT-B-32", "no_such_tag", "", "cpu"))


def test_offline_without_weights_fails_at_once_and_says_what_to_do(tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelError) as raised:
        load_model(ModelSpec("ViT-B-32", "laion2b_s34b_b79k", "", "cpu"), tmp_path)
    assert time.perf_counter() - started < 10  # open_clip alone retries for about 46 s
    message = str(raised.value)
    assert "checkpoint file" in message and "download" in message


def test_missing_and_mismatched_checkpoints(tmp_path, tiny_checkpoint):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(tmp_path / "nope.pt"), "cpu"))
    other = tmp_path / "other.json"
    other.write_text(
        TINY_MODEL_CONFIG.read_text(encoding="utf-8").replace('"embed_dim": 64', '"embed_dim": 32'),
        encoding="utf-8",
    )
    with pytest.raises(ModelError, match=r"another architecture than other: .*\(other: 32 "):
        load_model(ModelSpec(str(other), "", str(tiny_checkpoint), "cpu"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"is a text file .*, not a PyTorch checkpoint"):
        load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", str(junk), "cpu"))


def test_untrained_models_are_seeded_so_stored_embeddings_stay_valid():
    first = load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", "", "cpu"))
    assert first.untrained and first.identity == "mus-tiny-vit/random-seed0"
    weights = first.model.visual.proj.detach().clone()
    from mus_qgis.engine.clip.models import forget_models

    forget_models()
    again = load_model(ModelSpec(str(TINY_MODEL_CONFIG), "", "", "cpu"))
    assert again is not first
    assert torch.equal(weights, again.model.visual.proj)
    assert "mus-tiny-vit" in open_clip.list_models()
