"""Menu ▸ Service keys…: a key given once lands in QGIS's authentication database, encrypted,
and is never shown back."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsAuthMethodConfig
from qgis.PyQt.QtWidgets import QLabel, QLineEdit

from mus_qgis.gui.service_keys import ServiceKeysDialog
from mus_qgis.processing.service_keys import KEYED_SERVICES, forget_key, stored_key_id


@pytest.fixture
def dialog():
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("mus-test-master", True)
    shown = ServiceKeysDialog()
    yield shown
    shown.close()
    for service in KEYED_SERVICES:  # other tests expect no stored key
        forget_key(service.source)


def stored(source: str) -> QgsAuthMethodConfig:
    config = QgsAuthMethodConfig()
    assert QgsApplication.authManager().loadAuthenticationConfig(
        stored_key_id(source), config, True
    )
    return config


def visible_text(dialog) -> str:
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    texts += [e.text() + e.placeholderText() for e in dialog.findChildren(QLineEdit)]
    return "\n".join(texts)


def test_a_key_is_stored_replaced_and_forgotten(dialog):
    streetview = next(s for s in KEYED_SERVICES if s.source == "streetview")
    row = dialog.rows["streetview"]
    assert stored_key_id("streetview") == "" and not row["forget"].isEnabled()
    row["key"].setText("  AIzaFirstKey123 ")
    row["secret"].setText("s3cr3t-value")
    dialog.save(streetview)
    first = stored_key_id("streetview")
    assert first and stored("streetview").config("username") == "AIzaFirstKey123"
    assert stored("streetview").config("password") == "s3cr3t-value"
    assert row["key"].text() == "" and row["forget"].isEnabled()
    assert "Stored" in row["status"].text()
    assert "AIzaFirstKey123" not in visible_text(dialog) and "s3cr3t-value" not in visible_text(
        dialog
    )
    # Saving again replaces the key in the same configuration, not beside it.
    row["key"].setText("AIzaSecondKey456")
    dialog.save(streetview)
    assert stored_key_id("streetview") == first
    assert stored("streetview").config("username") == "AIzaSecondKey456"
    ours = [
        c
        for c in QgsApplication.authManager().availableAuthMethodConfigs().values()
        if c.uri().startswith("mus_qgis:")
    ]
    assert len(ours) == 1
    dialog.forget(streetview)
    assert stored_key_id("streetview") == "" and not row["forget"].isEnabled()


def test_an_empty_key_is_refused_with_words_and_nothing_is_stored(dialog):
    mapillary = next(s for s in KEYED_SERVICES if s.source == "mapillary")
    dialog.rows["mapillary"]["key"].setText("   ")
    dialog.save(mapillary)
    assert stored_key_id("mapillary") == ""
    assert "Give the Mapillary client access token" in dialog.rows["mapillary"]["status"].text()


def test_the_dialog_says_which_sources_need_no_key_and_where_to_get_one(dialog):
    text = visible_text(dialog)
    assert "Panoramax" in text and "own geotagged photos need no key" in text
    for service in KEYED_SERVICES:
        assert service.where in text
