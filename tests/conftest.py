"""Shared test helpers: where the real data is, and small OSM files made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ROME_OSM = SHARED_DATA / "osm" / "rome_monti_2016.osm"


def osm_xml(nodes: dict[int, tuple[float, float]], ways: list[tuple[int, list[int], dict]]) -> str:
    """OSM XML text for nodes {id: (lon, lat)} and ways [(id, node ids, tags)]."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6">']
    for node_id, (lon, lat) in nodes.items():
        lines.append(f'<node id="{node_id}" lat="{lat}" lon="{lon}"/>')
    for way_id, refs, tags in ways:
        body = "".join(f'<nd ref="{r}"/>' for r in refs)
        body += "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        lines.append(f'<way id="{way_id}">{body}</way>')
    lines.append("</osm>")
    return "\n".join(lines)


@pytest.fixture
def write_osm(tmp_path):
    def write(nodes, ways, name="area.osm") -> Path:
        path = tmp_path / name
        path.write_text(osm_xml(nodes, ways), encoding="utf-8")
        return path

    return write


IMAGES = SHARED_DATA / "images"
AREZZO_PHOTOS = sorted((IMAGES / "arezzo").glob("*.jpg"))
PANORAMAS = sorted((IMAGES / "equirectangular").glob("*.jpg"))
TINY_MODEL_CONFIG = ROOT / "tests" / "assets" / "mus-tiny-vit.json"


# The engine environment's Python (make test sets it; this default serves a hand-run pytest).
ENGINE_PYTHON = os.environ.setdefault(
    "MUS_ENGINE_PYTHON", str(ROOT / ".engine" / "env" / "bin" / "python")
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint file of the tiny test architecture with random (seeded) weights.

    Tests load it the way users load a downloaded checkpoint: a file given as ``pretrained``.
    It is written by the engine's Python, so that QGIS's test process never imports torch.
    """
    import subprocess

    path = tmp_path_factory.mktemp("weights") / "mus-tiny-vit.pt"
    subprocess.run(
        [ENGINE_PYTHON, str(ROOT / "tests" / "tiny_checkpoint.py"), str(path)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return path


@pytest.fixture(scope="session")
def tiny_spec(tiny_checkpoint):
    from mus_qgis.engine.clip.models import ModelSpec

    return ModelSpec(str(TINY_MODEL_CONFIG), "", str(tiny_checkpoint), "cpu")


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory) -> Path:
    """A folder holding a tiny Stable Diffusion pipeline with random (seeded) weights, written
    once a session by the engine's Python (engine/dreams/tiny.py); loaded as a model folder."""
    import importlib.util
    import subprocess

    folder = tmp_path_factory.mktemp("diffusion") / "mus-tiny-sd"
    if importlib.util.find_spec("diffusers") is not None:  # the engine's tests: no second Python
        from mus_qgis.engine.dreams.tiny import write_tiny_pipeline

        return write_tiny_pipeline(folder)
    subprocess.run(
        [ENGINE_PYTHON, "-m", "mus_qgis.engine.dreams.tiny", str(folder)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return folder
