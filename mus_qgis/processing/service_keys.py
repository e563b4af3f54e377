"""Service keys kept in QGIS's authentication database, so that a user gives each one once.

A key is stored as a Basic authentication configuration (the key as its user name, a secret, if
the service has one, as its password), marked as ours by its URI ``mus_qgis:<source>``. Fetch
panoramas uses it when its own key parameter is left empty. QGIS keeps the database encrypted
under its master password, which it asks for the first time one is stored; nothing here writes a
key anywhere else or logs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgis.core import QgsApplication, QgsAuthMethodConfig

from ..shared.imagery_sources import imagery_source_infos

URI_PREFIX = "mus_qgis:"


@dataclass(frozen=True)
class KeyedService:
    """A source that needs a key, and what to tell a user about it."""

    source: str  # the imagery source's name (as Fetch panoramas lists it)
    key_label: str
    secret_label: str  # "" when the service has no secret
    where: str  # the page where one gets a key

    @property
    def title(self) -> str:
        """The source's title, as the shared list of sources gives it."""
        return imagery_source_infos()[self.source].title


KEYED_SERVICES = (
    KeyedService(
        "mapillary",
        "Client access token",
        "",
        "https://www.mapillary.com/dashboard/developers",
    ),
    KeyedService(
        "streetview",
        "API key",
        "URL signing secret (optional)",
        "https://developers.google.com/maps/documentation/streetview/get-api-key",
    ),
)


class KeyStoreError(Exception):
    """The authentication database cannot be read or written; the message says why and what
    to do."""


def _manager():
    manager = QgsApplication.authManager()
    if manager.isDisabled():
        raise KeyStoreError(
            "QGIS's authentication system is disabled "
            f"({manager.disabledMessage()}): keys cannot be stored. Headless, set the key's "
            "environment variable instead (see the Fetch panoramas help)."
        )
    return manager


def stored_key_id(source: str) -> str:
    """The id of the configuration holding this source's key, or "" when none is stored."""
    manager = QgsApplication.authManager()
    if manager.isDisabled():
        return ""
    for auth_id, config in manager.availableAuthMethodConfigs().items():
        if config.uri() == URI_PREFIX + source:
            return auth_id
    return ""


def store_key(service: KeyedService, key: str, secret: str = "") -> str:
    """Store (or replace) a service's key; returns the configuration's id."""
    key, secret = key.strip(), secret.strip()
    if not key:
        raise KeyStoreError(f"Give the {service.title} {service.key_label.lower()} to store.")
    manager = _manager()
    if not manager.setMasterPassword(True):
        raise KeyStoreError(
            "QGIS's master password is not set, so keys cannot be stored encrypted. Set it when "
            "QGIS asks (Settings ▸ Options ▸ Authentication), then store the key again."
        )
    config = QgsAuthMethodConfig("Basic")
    config.setName(f"Multimodal Urban Studies: {service.title}")
    config.setUri(URI_PREFIX + service.source)
    config.setConfig("username", key)
    config.setConfig("password", secret)
    known = stored_key_id(service.source)
    if known:
        config.setId(known)  # noqa: QGS202 (a setter of the configuration, not a layer)
        saved = manager.updateAuthenticationConfig(config)
    else:
        saved = manager.storeAuthenticationConfig(config)
        if isinstance(saved, tuple):  # QGIS 3.28+ answers (ok, config)
            saved, config = saved[0], saved[1]
    if not saved:
        raise KeyStoreError(
            f"QGIS did not store the {service.title} key (is the master password right?)."
        )
    return config.id() or stored_key_id(service.source)


def forget_key(source: str) -> bool:
    """Remove a stored key; False when none was stored."""
    known = stored_key_id(source)
    return bool(known) and _manager().removeAuthenticationConfig(known)
