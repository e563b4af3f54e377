"""How the imagery algorithms reach their sources: which sources, each one's key and address,
the user's own photos, and the points to ask about. Fetch panoramas and Survey imagery share it.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsApplication,
    QgsAuthMethodConfig,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingParameterAuthConfig,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..bridge.qgis_enums import DATE_ONLY, FILE_FOLDER, NUMBER_DOUBLE
from ..shared.errors import MusError
from ..shared.imagery_sources import imagery_source_infos, service_urls
from ..shared.schemas.imagery import CaptureWindow, SourceAccessChoice, SourceCredentials
from .service_keys import stored_key_id

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
# Headless runs without an authentication configuration read these variables instead.
KEY_VARIABLES = {
    "streetview": ("MUS_STREETVIEW_KEY", "MUS_STREETVIEW_SECRET"),
    "mapillary": ("MUS_MAPILLARY_TOKEN", ""),
}


def add_access_parameters(algorithm) -> None:
    """The key (AUTH) and the local photos' folder (PHOTO_FOLDER) or CSV (PHOTO_CSV)."""
    algorithm.add_parameter(
        QgsProcessingParameterAuthConfig("AUTH", algorithm.tr("Key or token"), optional=True)
    )
    algorithm.add_parameter(
        QgsProcessingParameterFile(
            "PHOTO_FOLDER",
            algorithm.tr("Local photos: folder"),
            behavior=FILE_FOLDER,
            optional=True,
        )
    )
    algorithm.add_parameter(
        QgsProcessingParameterFile(
            "PHOTO_CSV", algorithm.tr("Local photos: CSV"), optional=True, fileFilter="CSV (*.csv)"
        )
    )


def add_radius_parameter(algorithm) -> None:
    """The search radius (RADIUS) around each point."""
    algorithm.add_parameter(
        QgsProcessingParameterNumber(
            "RADIUS",
            algorithm.tr("Search radius (metres)"),
            NUMBER_DOUBLE,
            defaultValue=25.0,
            minValue=1.0,
            maxValue=1000.0,
        ),
        decimals=0,
    )


def add_date_parameters(algorithm, *more: tuple) -> None:
    """The capture window (DATE_FROM, DATE_TO) and any more dates, each (name, label)."""
    for name, label in (("DATE_FROM", "Captured from"), ("DATE_TO", "Captured until"), *more):
        algorithm.add_parameter(
            QgsProcessingParameterDateTime(name, algorithm.tr(label), type=DATE_ONLY, optional=True)
        )


def date_value(algorithm, parameters, name: str, context):
    """A date parameter as ISO text; None when empty."""
    value = algorithm.parameterAsDateTime(parameters, name, context)
    return value.date().toString("yyyy-MM-dd") if value.isValid() else None


def capture_window(algorithm, parameters, context) -> CaptureWindow:
    """The capture window from DATE_FROM and DATE_TO, refused when it is upside down."""
    window = CaptureWindow(
        start=date_value(algorithm, parameters, "DATE_FROM", context),
        end=date_value(algorithm, parameters, "DATE_TO", context),
    )
    if window.start and window.end and window.start > window.end:
        raise QgsProcessingException(
            f"'Captured from' ({window.start}) is after 'Captured until' ({window.end}): no "
            "image could match; swap or correct the dates."
        )
    return window


def accesses_given(algorithm, names, parameters, context, feedback, url_parameter: str):
    """Each chosen source's access from the algorithm's AUTH, PHOTO_FOLDER, PHOTO_CSV and
    service URL parameters, and the local photos' place."""
    location = photo_location(
        names,
        algorithm.parameterAsFile(parameters, "PHOTO_FOLDER", context),
        algorithm.parameterAsFile(parameters, "PHOTO_CSV", context),
    )
    accesses = source_accesses(
        names,
        auth_id_given(algorithm, parameters, "AUTH", context),
        algorithm.parameterAsString(parameters, url_parameter, context),
        location,
        feedback,
    )
    return accesses, location


def chosen_sources(algorithm, parameters, name: str, context) -> list[str]:
    """The sources chosen in an enum parameter (one or several), by name, in the list's order."""
    names = list(imagery_source_infos())
    chosen = sorted(set(algorithm.parameterAsEnums(parameters, name, context)))
    if not chosen:
        raise QgsProcessingException(
            "No imagery source is chosen: choose at least one (Panoramax and KartaView need no "
            "key)."
        )
    return [names[index] for index in chosen]


def source_accesses(
    names: list[str], auth_id: str, url_text: str, location: str, feedback
) -> list[SourceAccessChoice]:
    """Each chosen source with its key, address and (local photos) place.

    The authentication configuration chosen serves the one chosen source that needs a key; with
    two such sources each takes its key from Service keys… or its environment variable."""
    keyed = [name for name in names if imagery_source_infos()[name].needs_key]
    if auth_id and len(keyed) > 1:
        raise QgsProcessingException(
            f"One key was chosen for {len(keyed)} sources that need one ({', '.join(keyed)}): "
            "leave 'Key or token' empty and give each its key once in Plugins ▸ Multimodal "
            "Urban Studies ▸ Service keys… (or, headless, in its environment variable)."
        )
    try:
        urls = service_urls(url_text, names)
    except MusError as exc:
        raise QgsProcessingException(str(exc)) from None
    return [
        SourceAccessChoice(
            name,
            urls.get(name, ""),
            location if name == "local" else "",
            source_credentials(name, auth_id if name in keyed else "", feedback),
        )
        for name in names
    ]


def photo_location(names: list[str], folder: str, listing: str) -> str:
    """Local photos' folder or CSV (the CSV wins), checked when local photos are chosen."""
    location = listing or folder
    if "local" not in names:
        return location
    if not location:
        raise QgsProcessingException(
            "Local photos need a folder of geotagged images or a CSV of lon, lat, path."
        )
    if not os.path.exists(location):
        raise QgsProcessingException(
            f"The local photos location {location} does not exist: choose the folder of "
            "your geotagged photos or a CSV of lon, lat, path."
        )
    return location


def auth_id_given(algorithm, parameters, name: str, context) -> str:
    """The authentication configuration's id as given: QGIS answers an empty string for an id
    it does not know, which would read as "no configuration" and end in "needs a key"."""
    return str(parameters.get(name) or "").strip() or algorithm.parameterAsString(
        parameters, name, context
    )


def source_credentials(name: str, auth_id: str, feedback) -> SourceCredentials:
    """The key and secret: from the authentication configuration chosen, else from the
    environment (headless), else the one stored from Service keys…."""
    key_variable, secret_variable = KEY_VARIABLES.get(name, ("", ""))
    if not auth_id and not (key_variable and os.environ.get(key_variable)):
        # None chosen and none in the environment: the key stored from Service keys…, if any.
        auth_id = stored_key_id(name)
        if auth_id:
            feedback.pushInfo(f"Using the {name} key stored in Service keys.")
    if auth_id:
        manager = QgsApplication.authManager()
        headless = f", or, headless, leave it empty and set {key_variable}" if key_variable else ""
        if manager.isDisabled():
            raise QgsProcessingException(
                f"The authentication configuration {auth_id} cannot be read: QGIS's "
                f"authentication system is disabled ({manager.disabledMessage()}){headless}."
            )
        if auth_id not in manager.configIds():
            raise QgsProcessingException(
                f"There is no authentication configuration {auth_id} in this QGIS profile: "
                f"choose one under Settings ▸ Options ▸ Authentication{headless}."
            )
        config = QgsAuthMethodConfig()
        if not manager.loadAuthenticationConfig(auth_id, config, True):
            raise QgsProcessingException(
                f"The authentication configuration {auth_id} cannot be read (is the master "
                f"password set?){headless}."
            )
        key = config.config("username") or config.config("token") or ""
        if not key.strip():
            raise QgsProcessingException(
                f"The authentication configuration {auth_id} gives no key or token (is the "
                f"master password set? Is the key in its user name field?){headless}."
            )
        return SourceCredentials(key=key.strip(), secret=(config.config("password") or "").strip())
    # A line break a value set from a file may end in is trimmed by the engine's Credentials.
    return SourceCredentials(
        key=os.environ.get(key_variable, "") if key_variable else "",
        secret=os.environ.get(secret_variable, "") if secret_variable else "",
    )


def points_in_wgs84(algorithm, source, parameters, bearing_parameter: str, context):
    """Each feature's point in EPSG:4326 with its street bearing, as the engine reads them
    ([[feature id, lon, lat, bearing or None], ...]), and every feature (those without a
    geometry too, which keep a row of their own in the output)."""
    bearing_index = (
        algorithm.field_index(source, parameters, bearing_parameter, context, what="street bearing")
        if bearing_parameter
        else -1
    )
    transform = QgsCoordinateTransform(source.sourceCrs(), WGS84, context.transformContext())
    points, features = [], []
    for feature in source.getFeatures():
        features.append(feature)
        geometry = feature.geometry()
        if geometry.isNull() or geometry.isEmpty():
            continue
        point = transform.transform(geometry.centroid().asPoint())
        bearing = feature.attributes()[bearing_index] if bearing_index >= 0 else None
        try:
            bearing = float(bearing) if bearing is not None else None
        except (TypeError, ValueError):
            bearing = None
        points.append([feature.id(), point.x(), point.y(), bearing])
    return points, features
