"""The plugin's menu: each entry does what it says (in the offscreen QGIS, with QGIS's iface
stand-in), without running the long jobs themselves."""

from __future__ import annotations

import pytest


@pytest.fixture
def plugin(mus_provider, qgis_iface, monkeypatch):
    from qgis.PyQt.QtCore import QSize

    from mus_qgis import classFactory

    # pytest-qgis's stand-in iface lacks the default argument QGIS's own iconSize has.
    monkeypatch.setattr(qgis_iface, "iconSize", lambda docked=False: QSize(24, 24))
    started = classFactory(qgis_iface)
    runs = []
    monkeypatch.setattr(
        started, "run_in_background", lambda name, parameters, done: runs.append((name, parameters))
    )
    started.runs = runs
    return started


def test_set_up_the_engine_starts_the_set_up_with_the_choices_in_use(plugin):
    plugin.setup_engine()
    [(name, parameters)] = plugin.runs
    assert name == "mus:setupengine"
    assert isinstance(parameters, dict)


def test_engine_status_asks_the_engine(plugin):
    plugin.show_engine_status()
    assert plugin.runs == [("mus:enginestatus", {})]
