"""Embedding on a local Ray cluster (2 CPUs) against the single-process engine, the tiny model.

One cluster for the whole module: starting Ray and its workers costs far more than the runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pytest

from mus_qgis.engine.clip.embedding import Location, embed_locations
from mus_qgis.engine.clip.models import load_model
from mus_qgis.engine.clip.store import EmbeddingStore
from mus_qgis.engine.imagery.panorama import ViewSetting
from tests.conftest import AREZZO_PHOTOS, PANORAMAS, ROOT

ray = pytest.importorskip("ray", reason="Ray is optional: requirements-ray.txt")
from mus_qgis.engine.clip.ray_embed import embed_with_ray  # noqa: E402

SETTING = ViewSetting()
ENCODER_TITLE = b"MapWorker(MapBatches(Encoder))"


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs whose workers import this checkout's engine."""
    ray.init(
        num_cpus=2,
        object_store_memory=300 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tiny_spec):
    return load_model(tiny_spec)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Photos and panoramas, and a copy of one photo under another name (the same digest)."""
    folder = tmp_path_factory.mktemp("images")
    paths = [*AREZZO_PHOTOS[:6], *PANORAMAS]
    copies = [Path(shutil.copy(p, folder / f"{i:02d}{p.suffix}")) for i, p in enumerate(paths)]
    twin = folder / "twin.jpg"
    shutil.copy(paths[0], twin)
    return [*copies, twin]


def single_process(tiny, paths):
    result = embed_locations([Location((str(p),)) for p in paths], tiny, SETTING)
    return {keys[0]: row for keys, row in zip(result.keys, result.vectors, strict=True)}


def stored_rows(cache: Path, tiny) -> tuple[list[str], EmbeddingStore]:
    store = EmbeddingStore.under(cache / "embeddings", tiny.identity, SETTING.key)
    keys = []
    for path in store.shards.shard_paths():
        keys += feather.read_table(path, columns=["key"]).column(0).to_pylist()
    return keys, store


def kill_first_encoder_once_a_shard_is_written(shards: Path, killed: list[int]) -> None:
    """Kill -9 the Ray actor process that encodes, as soon as it has delivered some rows."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        if list(shards.glob("embeddings/part-*.arrow")):
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and ENCODER_TITLE in (entry / "cmdline").read_bytes():
                        os.kill(int(entry.name), getattr(signal, "SIGKILL", signal.SIGTERM))
                        killed.append(int(entry.name))
                        return
                except OSError:
                    continue
        time.sleep(0.05)


def test_a_killed_worker_loses_nothing_and_each_digest_is_stored_once(
    ray_cluster, tiny, tiny_spec, images, tmp_path
):
    first = [*images[:4], *images[6:8], images[-1]]  # 4 photos, 2 panoramas, a photo's twin
    shards = EmbeddingStore.under(tmp_path / "embeddings", tiny.identity, SETTING.key)
    shards.close()
    killed: list[int] = []
    killer = threading.Thread(
        target=kill_first_encoder_once_a_shard_is_written, args=(shards.shards.folder, killed)
    )
    killer.start()
    try:
        result = embed_with_ray(
            [Location((str(p),)) for p in first],
            tiny_spec,
            SETTING,
            tmp_path,
            actors=1,
            # One image a batch: seven round trips after the first shard, so that the killer
            # (polling every 50 ms) finds the encoder still at work even on a loaded machine,
            # where four a batch once let the run end before it looked.
            batch_size=1,
            shard_rows=1,
        )
    finally:
        killed.append(0)  # stops the killer if the run ended first
        killer.join()
    assert killed[0] != 0, "the encoder was never killed: the test proves nothing"
    # The killed actor delivered rows, and a restarted one encoded the rest.
    assert killed[0] in result.encoder_pids and len(result.encoder_pids) >= 2

    reference = single_process(tiny, first)
    assert len(reference) == 6  # the twin is the first photo again
    assert result.counts["encoded"] == 6
    assert result.counts["encoded"] + result.counts["same image as another"] >= 7
    assert set(result.statuses.values()) == {"ok"}
    keys, store = stored_rows(tmp_path, tiny)
    try:
        assert sorted(keys) == sorted(reference)  # each digest once, none lost
        found, damaged = store.get(reference)
        assert not damaged
        for key, vector in reference.items():
            np.testing.assert_allclose(found[key], vector, atol=1e-5)
        # The digest/path table travels with the vectors: every path, the twin included.
        assert {str(p) for p in first} <= set(store.files())
    finally:
        store.close()


def test_resume_computes_only_what_is_missing_then_nothing(
    ray_cluster, tiny, tiny_spec, images, tmp_path
):
    done, rest = images[:3], images[3:-1]
    # A run cut short: the store holds the first images (here from the single-process engine).
    store = EmbeddingStore.under(tmp_path / "embeddings", tiny.identity, SETTING.key)
    embed_locations([Location((str(p),)) for p in done], tiny, SETTING, store)
    store.close()

    everything = [Location((str(p),)) for p in done + rest]
    result = embed_with_ray(everything, tiny_spec, SETTING, tmp_path, batch_size=8)
    assert result.counts["known without reading"] == len(done)
    assert result.counts["encoded"] == len(rest)
    again = embed_with_ray(everything, tiny_spec, SETTING, tmp_path)
    assert again.counts["known without reading"] == len(done + rest)
    assert again.counts["encoded"] == 0 and not again.encoder_pids

    reference = single_process(tiny, rest)
    keys, store = stored_rows(tmp_path, tiny)
    try:
        assert sorted(keys) == sorted(reference)
        found, _ = store.get(reference)
        for key, vector in reference.items():
            np.testing.assert_allclose(found[key], vector, atol=1e-5)
        assert len(store) == len(done) + len(rest)
    finally:
        store.close()


def test_without_ray_the_command_line_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from mus_qgis.engine import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed
    code = cli.main(["embed", str(AREZZO_PHOTOS[0]), "--ray", "--cache-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    assert "--ray needs Ray" in error and "requirements-ray.txt" in error
    assert not list(tmp_path.iterdir())  # nothing read, nothing written
