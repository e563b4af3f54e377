"""Getting started: shown once on the first start, each step with its state and the button that
does it."""

from __future__ import annotations

import json

import pytest
from qgis.core import QgsSettings
from qgis.PyQt.QtWidgets import QFileDialog, QPushButton

from mus_qgis.bridge import engine as bridge_engine
from mus_qgis.gui import getting_started
from mus_qgis.gui.getting_started import SHOW_AT_START_KEY, GettingStartedDialog


@pytest.fixture
def plugin(mus_provider, qgis_iface, monkeypatch):
    from qgis.PyQt.QtCore import QSize

    from mus_qgis import classFactory

    monkeypatch.setattr(qgis_iface, "iconSize", lambda docked=False: QSize(24, 24))
    started = classFactory(qgis_iface)
    started.runs = []
    monkeypatch.setattr(
        started, "run_in_background", lambda name, parameters, done: started.runs.append(name)
    )
    yield started
    QgsSettings().remove(SHOW_AT_START_KEY)
    bridge_engine.set_default_checkpoint("")


def button(dialog, text: str) -> QPushButton:
    return next(b for b in dialog.findChildren(QPushButton) if b.text() == text)


def test_the_first_start_shows_it_once(plugin):
    QgsSettings().remove(SHOW_AT_START_KEY)
    assert getting_started.should_show_at_start()
    plugin.first_start()
    assert plugin.getting_started.isVisible()
    assert not getting_started.should_show_at_start()  # not again by itself
    plugin.getting_started.show_at_start.setChecked(True)  # unless the user asks
    assert getting_started.should_show_at_start()
    plugin.getting_started.close()


def test_each_step_does_what_its_button_says(plugin):
    dialog = GettingStartedDialog(plugin)
    button(dialog, "Set up the engine").click()
    assert plugin.runs == ["mus:setupengine"]
    button(dialog, "Download now").click()
    assert plugin.runs[-1] == "mus:downloadweights"
    button(dialog, "Service keys…").click()
    assert plugin.keys_dialog.isVisible()
    plugin.keys_dialog.close()
    dialog.close()


def test_a_chosen_checkpoint_is_where_every_clip_dialog_starts(plugin, tmp_path, monkeypatch):
    from qgis.core import QgsApplication

    checkpoint = tmp_path / "open_clip_model.safetensors"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(checkpoint), ""))
    dialog = GettingStartedDialog(plugin)
    assert not button(dialog, "Forget the file").isEnabled()
    button(dialog, "Use a checkpoint file…").click()
    assert str(checkpoint) in dialog.weights_status.text()
    registry = QgsApplication.processingRegistry()
    for algorithm_id in ("mus:classifyclip", "mus:labelperiods", "mus:dreamstreets"):
        fresh = registry.createAlgorithmById(algorithm_id)  # as a dialog gets it
        assert fresh.parameterDefinition("CHECKPOINT").defaultValue() == str(checkpoint)
    button(dialog, "Forget the file").click()
    fresh = registry.createAlgorithmById("mus:classifyclip")
    assert not fresh.parameterDefinition("CHECKPOINT").defaultValue()
    assert "downloaded on first use" in dialog.weights_status.text()
    dialog.close()


def test_the_engine_step_says_whether_it_is_set_up(plugin, tmp_path, monkeypatch):
    monkeypatch.delenv("MUS_ENGINE_PYTHON")
    monkeypatch.setattr(bridge_engine, "engine_root", lambda: tmp_path)
    monkeypatch.setattr(getting_started, "engine_root", lambda: tmp_path)
    assert getting_started.engine_state().startswith("Now: not set up yet")
    python = tmp_path / "envs" / "engine-1" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("", encoding="utf-8")
    record = {"env": "envs/engine-1", "python": str(python), "torch_label": "PyTorch's CPU build"}
    (tmp_path / "current.json").write_text(json.dumps(record), encoding="utf-8")
    monkeypatch.setattr(bridge_engine, "current_python", lambda root: str(python))
    assert getting_started.engine_state() == "Now: set up (PyTorch's CPU build)."


def test_download_weights_offline_says_what_to_fetch_and_where_to_choose_it(mus_provider, tmp_path):
    """The tests' engine is offline (HF_HUB_OFFLINE): the algorithm stops at once with advice."""
    from qgis import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as raised:
        processing.run("mus:downloadweights", {"CACHE_FOLDER": str(tmp_path)})
    words = " ".join(str(raised.value).split())
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/" in words
    assert "Getting started ▸ Use a checkpoint file…" in words
