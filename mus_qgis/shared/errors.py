"""Typed errors raised by the engine; the QGIS adapter turns them into Processing exceptions."""

from __future__ import annotations


class MusError(Exception):
    """Base class of every error the engine raises on purpose, with a message meant for the user."""


class StudyAreaError(MusError, ValueError):
    """The study area is missing, ambiguous, empty or invalid, or a place name was not found."""


class OsmFileError(MusError, ValueError):
    """A local OpenStreetMap file cannot be read or holds no OpenStreetMap data."""


class NoStreetsError(MusError, ValueError):
    """The study area holds no street of the chosen classes."""


class SettingError(MusError, ValueError):
    """A numeric setting is out of the range the algorithm can use (a negative or absurd size)."""


class CrsError(MusError, ValueError):
    """A coordinate reference system cannot serve where distances in metres are needed."""


class DownloadError(MusError, RuntimeError):
    """A network service (Nominatim, Overpass) could not be reached or answered with an error."""


class CanceledError(MusError):
    """The user cancelled the run."""

    def __init__(self, message: str = "Canceled by the user.") -> None:
        super().__init__(message)


class MissingDependencyError(MusError, ImportError):
    """A Python package the algorithm needs cannot be imported."""

    def __init__(self, packages: list[str], install_command: str) -> None:
        self.packages = packages
        self.install_command = install_command
        names = ", ".join(packages)
        super().__init__(
            f"The engine needs the Python package(s) {names}, which its Python cannot import. "
            "Run 'Set up the engine' (mus:setupengine) again, or, for an engine Python of your "
            f"own, install them with:\n    {install_command}"
        )


class LocalPhotosError(MusError, ValueError):
    """The local photos' folder or CSV cannot be read at all (one bad photo costs only itself)."""


class LabelSetError(MusError, ValueError):
    """A label set or a prompt template cannot be used (empty, duplicated labels, no {label})."""


class ModelError(MusError, RuntimeError):
    """A model cannot be created or its weights cannot be found or loaded."""


class EmbeddingStoreError(MusError, RuntimeError):
    """The embedding store cannot be opened or belongs to another model or view setting."""


class ServiceError(MusError, RuntimeError):
    """An imagery service failed in a way that retrying does not mend."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CredentialsError(ServiceError):
    """The key or token is missing, invalid or not allowed: the whole run stops at once."""


def secret_variants(secrets) -> list[str]:
    """Every form in which a secret can show up in a message: as given, trimmed, and as Python
    quotes it in an error (a line break inside shows as a backslash and "r"); longest first, so
    that replacing them in order leaves no part of one showing."""
    variants = {
        variant
        for secret in secrets
        if secret
        for variant in (
            secret,
            secret.strip(),
            repr(secret)[1:-1],
            repr(secret.encode("utf-8", "replace"))[2:-1],
        )
        if variant
    }
    return sorted(variants, key=len, reverse=True)


def secret_redactor(secrets):
    """A function that replaces every form of the given secrets in a text with "***"."""
    ordered = secret_variants(secrets)

    def redact(text: str) -> str:
        for variant in ordered:
            text = text.replace(variant, "***")
        return text

    return redact
