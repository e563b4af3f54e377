"""Model weights fetched before a study, with the download's progress, from a stand-in for
Hugging Face on 127.0.0.1 (HF_ENDPOINT); offline, the advice names the file, where it comes from
and where to choose it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mus_qgis.engine.jobs import registered
from mus_qgis.shared.schemas.clip import DownloadWeightsParams, DownloadWeightsResult
from tests.conftest import ENGINE_PYTHON, ROOT
from tests.fakes.hf_hub import FakeHub

REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # ViT-B-32's default tag, laion2b_s34b_b79k


def download(cache, hub=None, offline=False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1" if offline else "0"}
    if hub is not None:
        env["HF_ENDPOINT"] = hub.endpoint
    return subprocess.run(
        [ENGINE_PYTHON, "-m", "mus_qgis.engine", "download", "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
    )


def test_the_weights_come_with_their_progress_and_only_once(tmp_path):
    weights = os.urandom(25_000_000)  # three of huggingface_hub's 10 MB pieces
    with FakeHub({(REPO, "open_clip_pytorch_model.bin"): weights}) as hub:
        first = download(tmp_path, hub)
        assert first.returncode == 0, first.stderr
        told = [
            float(n) for n in re.findall(r"Downloading .*?: ([\d.]+) of 25\.0 MB", first.stderr)
        ]
        assert len(told) >= 2 and told == sorted(told) and told[-1] == 25.0, first.stderr
        path = first.stdout.split(" (")[0]
        assert Path(path).read_bytes() == weights
        assert path.startswith(str(tmp_path / "models"))
        # open_clip prefers the safetensors file: it was asked for first, and is not there.
        asked = [p for method, p in hub.served if method == "HEAD"]
        assert asked[0].endswith("/open_clip_model.safetensors")
        gets = sum(method == "GET" and "/resolve/" in p for method, p in hub.served)
        again = download(tmp_path, hub)
        assert again.returncode == 0 and "was in the cache already" in again.stdout
        assert sum(m == "GET" and "/resolve/" in p for m, p in hub.served) == gets  # no new fetch


def test_the_job_gives_the_cached_file_and_says_it_was_there(tmp_path):
    with FakeHub({(REPO, "open_clip_model.safetensors"): b"safetensors weights"}) as hub:
        assert download(tmp_path, hub).returncode == 0
    answer = registered()["download_weights"](
        DownloadWeightsParams(cache_dir=str(tmp_path)).to_dict(), None
    )
    result = DownloadWeightsResult.from_dict(answer)
    assert result.cached and result.bytes == len(b"safetensors weights")
    assert result.path.endswith("open_clip_model.safetensors")


def test_offline_the_advice_names_the_file_its_source_and_where_to_choose_it(tmp_path):
    failed = download(tmp_path, offline=True)
    assert failed.returncode != 0
    words = " ".join(failed.stderr.split())
    assert "HF_HUB_OFFLINE is set" in words
    assert f"https://huggingface.co/{REPO}/resolve/main/open_clip_model.safetensors" in words
    assert "Getting started ▸ Use a checkpoint file…" in words
    assert "Traceback" not in failed.stderr


def test_a_repository_without_the_weights_is_said_plainly(tmp_path):
    with FakeHub({}) as hub:
        failed = download(tmp_path, hub)
    assert failed.returncode != 0
    assert f"{REPO} on Hugging Face holds none of open_clip_model.safetensors" in failed.stderr


@pytest.mark.parametrize("tag", ["no_such_tag"])
def test_an_unknown_tag_lists_the_known_ones(tmp_path, tag):
    with pytest.raises(Exception, match=r"no pretrained weights 'no_such_tag'.*laion2b_s34b_b79k"):
        registered()["download_weights"](
            DownloadWeightsParams(cache_dir=str(tmp_path), pretrained=tag).to_dict(), None
        )


def test_a_classification_offline_gets_the_same_advice_before_the_model_loads(tmp_path):
    """The tests run offline (HF_HUB_OFFLINE): a classification's check names the file too."""
    from mus_qgis.engine.clip.models import weights_problem

    words = " ".join(weights_problem("ViT-B-32", "laion2b_s34b_b79k", tmp_path).split())
    assert f"https://huggingface.co/{REPO}/resolve/main/open_clip_model.safetensors" in words
    assert str(tmp_path) in words and "Use a checkpoint file…" in words
