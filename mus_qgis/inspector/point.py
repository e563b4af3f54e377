"""What a classified layer says about one point, and the order to step through its points."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from qgis.core import NULL, QgsFeatureRequest

from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import NO_GEOMETRY_REQUEST
from ..shared.image_paths import parse_image_paths

# Where each imagery source shows an image by its id (the fetch algorithm's source and image_id).
IMAGE_PAGES = {
    "streetview": "https://www.google.com/maps/@?api=1&map_action=pano&pano={id}",
    "mapillary": "https://www.mapillary.com/app/?pKey={id}",
    "kartaview": "https://api.openstreetcam.org/2.0/photo/{id}",
    "panoramax": "https://api.panoramax.xyz/#focus=pic&pic={id}",
}
SERVICE_NAMES = {
    "streetview": "Google Street View",
    "mapillary": "Mapillary",
    "kartaview": "KartaView",
    "panoramax": "Panoramax",
}
LOWEST_MARGIN = "margin"  # the default order: the least certain points first


def value(feature, name: str, default=None):
    """A field's value, None for NULL or a field the layer does not have."""
    index = feature.fields().lookupField(name)
    if index < 0:
        return default
    found = feature.attributes()[index]
    return default if found is None or found == NULL else found


@dataclass
class InspectedPoint:
    """One point as the inspector shows it."""

    fid: int
    status: str  # "ok", or why the point has no reading (no image, an error, a fetch status)
    paths: list[str] = field(default_factory=list)
    bearing: float | None = None
    heading: float | None = None
    pooled: list[tuple[str, float | None]] = field(default_factory=list)
    margin: float | None = None
    captured: str = ""
    source: str = ""
    image_id: str = ""
    creator: str = ""
    licence: str = ""
    label_user: str = ""

    @property
    def link_text(self) -> str:
        """What the link opens, in words."""
        if IMAGE_PAGES.get(self.source) and self.image_id:
            return f"Open the image on {SERVICE_NAMES.get(self.source, self.source)}"
        return "Open the photo file"

    @property
    def link(self) -> str:
        """The image on its service; a local photo's own file."""
        page = IMAGE_PAGES.get(self.source)
        if page and self.image_id:
            return page.format(id=quote(self.image_id, safe=""))
        if self.paths:
            return Path(self.paths[0]).as_uri() if Path(self.paths[0]).is_absolute() else ""
        return ""


def fields_of(settings: dict) -> tuple[str, str, str]:
    """The image, bearing and heading fields the classification read (its defaults before
    the run settings recorded them)."""
    return (
        settings.get("image_field") or "image_paths",
        settings.get("bearing_field") or "bearing",
        settings.get("heading_field") or "image_heading",
    )


def read_point(layer, fid: int, settings: dict | None = None) -> InspectedPoint:
    """The point ``fid`` of a classified layer."""
    settings = classification_settings(layer) if settings is None else settings
    return point_of(layer.getFeature(fid), settings)


def point_of(feature, settings: dict) -> InspectedPoint:
    """A classified layer's feature as the inspector shows it."""
    fid = feature.id()
    image_field, bearing_field, heading_field = fields_of(settings)
    paths = list(parse_image_paths(value(feature, image_field), settings.get("image_folder")))
    pooled = []
    for rank in range(1, 11):
        label = value(feature, f"label_{rank}")
        if label is None and feature.fields().lookupField(f"label_{rank}") < 0:
            break
        if label:
            pooled.append((str(label), _number(value(feature, f"prob_{rank}"))))
    status = value(feature, "clip_status") or ""
    if not paths:
        fetched = value(feature, "fetch_status")
        status = f"no imagery ({fetched})" if fetched and fetched != "ok" else "no imagery"
    return InspectedPoint(
        fid=fid,
        status=str(status or "not classified"),
        paths=paths,
        bearing=_number(value(feature, bearing_field)),
        heading=_number(value(feature, heading_field)),
        pooled=pooled,
        margin=_number(value(feature, "margin")),
        captured=str(value(feature, "captured", "")),
        source=str(value(feature, "source", "")),
        image_id=str(value(feature, "image_id", "")),
        creator=str(value(feature, "creator", "")),
        licence=str(value(feature, "licence", "")),
        label_user=str(value(feature, "label_user", "")),
    )


def _number(found) -> float | None:
    try:
        number = float(found)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def is_classified(layer) -> bool:
    """A point layer CLIP-classify wrote (its fields; the run settings may be lost in a copy)."""
    fields = getattr(layer, "fields", None)
    if fields is None:
        return False
    names = set(layer.fields().names())
    return {"label_1", "clip_status"} <= names


def step_order(layer, field_name: str = LOWEST_MARGIN, descending: bool = False) -> list[int]:
    """The layer's feature ids in the order of a field; points without a value come last, ties
    in id order (the margin ascending puts the points a correction teaches most first)."""
    request = QgsFeatureRequest().setFlags(NO_GEOMETRY_REQUEST)
    request.setSubsetOfAttributes([field_name], layer.fields())
    keyed, empty = [], []
    for feature in layer.getFeatures(request):
        found = value(feature, field_name)
        (empty if found is None or found == "" else keyed).append((found, feature.id()))
    keyed.sort(key=lambda pair: pair[1])
    keyed.sort(key=lambda pair: pair[0], reverse=descending)
    return [fid for _, fid in keyed] + sorted(fid for _, fid in empty)


def logit_scale_of(layer, settings: dict) -> float | None:
    """The model's logit scale: from the run settings, or (a layer classified before they
    recorded it) from a point's first two scores, since prob_i ∝ exp(scale · score_i)."""
    if settings.get("logit_scale"):
        return float(settings["logit_scale"])
    for feature in layer.getFeatures():
        numbers = [_number(value(feature, name)) for name in ("score_1", "score_2")]
        chances = [_number(value(feature, name)) for name in ("prob_1", "prob_2")]
        if None in numbers or None in chances or min(chances) <= 0:
            continue
        if abs(numbers[0] - numbers[1]) > 1e-4:
            return math.log(chances[0] / chances[1]) / (numbers[0] - numbers[1])
    return None
