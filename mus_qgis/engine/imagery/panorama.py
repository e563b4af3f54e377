"""Whole 360° panoramas: equirectangular images cut into perspective views (gnomonic projection).

Angles: yaw is measured clockwise from the panorama's centre column (which faces the camera's
heading when that is known), pitch upwards from the horizon. Column x of a W-wide panorama looks
at yaw (x + 0.5) / W * 360 - 180; row y of an H-high one at pitch 90 - (y + 0.5) / H * 180.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

EQUIRECTANGULAR_ASPECT_TOLERANCE = 0.01
_GPANO_PROJECTION = re.compile(rb"GPano:ProjectionType\s*(?:=\s*[\"']|>)\s*equirectangular", re.I)
_GPANO_HEADING = re.compile(rb"GPano:PoseHeadingDegrees\s*(?:=\s*[\"']|>)\s*(-?[0-9.]+)", re.I)


@dataclass(frozen=True)
class ViewSetting:
    """How an image becomes model inputs.

    Panoramas are cut into ``count`` views of ``fov`` degrees, evenly spaced in yaw from the
    street's bearing (or the panorama's centre) and tilted by ``pitch``. ``centre_crop`` instead
    gives every image CLIP's own square centre crop, which keeps only a quarter of a 2:1 panorama:
    it is there to compare with, not to use.
    """

    count: int = 4
    fov: float = 90.0
    pitch: float = 0.0
    centre_crop: bool = False

    def __post_init__(self) -> None:
        if not self.centre_crop:
            if not 1 <= self.count <= 36:
                raise ValueError(f"A panorama gives 1 to 36 views, not {self.count}.")
            if not 10.0 <= self.fov <= 150.0:
                raise ValueError(f"A view's field of view must be 10° to 150°, not {self.fov}°.")
            if not -90.0 <= self.pitch <= 90.0:
                raise ValueError(f"The pitch must be within ±90°, not {self.pitch}°.")

    @property
    def key(self) -> str:
        """Names the setting in the embedding store."""
        if self.centre_crop:
            return "centre-crop"
        return f"views{self.count}-fov{self.fov:g}-pitch{self.pitch:g}"

    def yaws(self, offset: float = 0.0) -> list[float]:
        return [(offset + index * 360.0 / self.count) % 360.0 for index in range(self.count)]

    def panorama_width_needed(self, view_size: int) -> int:
        """The panorama width at which one panorama pixel maps to about one view pixel."""
        return math.ceil(math.pi * view_size / math.tan(math.radians(self.fov) / 2.0))


def is_equirectangular(width: int, height: int, head: bytes = b"") -> bool:
    """A 2:1 image, or one whose XMP says so (GPano:ProjectionType), is taken as a panorama."""
    if head and _GPANO_PROJECTION.search(head):
        return True
    return height > 0 and abs(width / height - 2.0) <= 2.0 * EQUIRECTANGULAR_ASPECT_TOLERANCE


def xmp_heading(head: bytes) -> float | None:
    """The compass heading of the panorama's centre column from GPano XMP, when present."""
    match = _GPANO_HEADING.search(head)
    return float(match.group(1)) % 360.0 if match else None


def view_directions(yaw: float, pitch: float, fov: float, size: int):
    """For each pixel of a size×size view: (yaw, pitch) in radians that it looks at."""
    import numpy as np

    focal = (size / 2.0) / math.tan(math.radians(fov) / 2.0)
    centres = np.arange(size, dtype=np.float64) + 0.5 - size / 2.0
    down, right = np.meshgrid(centres, centres, indexing="ij")
    # Camera frame: x right, y up, z forward; tilt by pitch about x, then turn by yaw about y.
    x, y, z = right, -down, np.full_like(right, focal)
    cos_p, sin_p = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    y, z = y * cos_p + z * sin_p, -y * sin_p + z * cos_p
    cos_y, sin_y = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    x, z = x * cos_y + z * sin_y, -x * sin_y + z * cos_y
    return np.arctan2(x, z), np.arctan2(y, np.sqrt(x * x + z * z))


# A plan holds int64 indices and float weights for every pixel of every view: about 80 MB for
# four 640-pixel views. Views aimed along each street differ at every location, so a long cache
# mostly holds memory (64 plans took 5+ GB while fetching Mapillary panoramas); a few suffice for
# the repeats that do occur (panoramas without a bearing share one geometry).
@lru_cache(maxsize=4)
def _sampling_plan(
    width: int, height: int, yaws: tuple[float, ...], pitch: float, fov: float, size: int
):
    """Flat pixel indices and bilinear weights (V×4×pixels each): computed once per geometry."""
    import numpy as np

    indices, weights = [], []
    for yaw in yaws:
        lon, lat = view_directions(yaw, pitch, fov, size)
        column = (lon / (2 * math.pi) + 0.5) * width - 0.5
        row = (0.5 - lat / math.pi) * height - 0.5
        left, top = np.floor(column), np.floor(row)
        fx, fy = column - left, row - top
        left, top = left.astype(np.int64), top.astype(np.int64)
        corners = []
        for dy, dx, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (0, 1, fx * (1 - fy)),
            (1, 0, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            # Longitude wraps around; latitude stops at the poles.
            cols = (left + dx) % width
            rows = np.clip(top + dy, 0, height - 1)
            corners.append(((rows * width + cols).reshape(-1), weight.reshape(-1)))
        indices.append(np.stack([c[0] for c in corners]))
        weights.append(np.stack([c[1] for c in corners]).astype(np.float32))
    return np.stack(indices), np.stack(weights)


def perspective_views(panorama, yaws: list[float], pitch: float, fov: float, size: int):
    """Views (uint8 tensor, V×3×size×size) of an equirectangular uint8 array or tensor H×W×3.

    Cut with numpy, which runs on the calling thread only: the engine cuts in several decoding
    threads while the model runs, and torch's own parallel loops there (a thread team per
    decoding thread) slowed the cut up to five-fold, and the model beside it, whenever the cores
    were busy (BENCHMARKS.md). Only the sampled pixels are made float, not the whole panorama.
    """
    import numpy as np
    import torch

    pixels_in = np.asarray(panorama)
    height, width = pixels_in.shape[0], pixels_in.shape[1]
    plan_yaws = tuple(round(yaw, 3) for yaw in yaws)
    indices, weights = _sampling_plan(width, height, plan_yaws, float(pitch), float(fov), size)
    flat = pixels_in.reshape(-1, 3)
    count = indices.shape[0]
    views = np.zeros((count, indices.shape[2], 3), dtype=np.float32)
    for corner in range(4):
        views += flat[indices[:, corner]].astype(np.float32) * weights[:, corner, :, None]
    views = np.clip(np.rint(views), 0, 255).astype(np.uint8).reshape(count, size, size, 3)
    return torch.from_numpy(np.ascontiguousarray(views.transpose(0, 3, 1, 2)))
