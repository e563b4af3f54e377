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
    # A plain substring test first: the pattern's search of a 64 KB head without GPano costs
    # 0.4 ms, a tenth of reading a 640-pixel view, and holds the GIL that the other decoding
    # threads need.
    if _has_gpano(head) and _GPANO_PROJECTION.search(head):
        return True
    return height > 0 and abs(width / height - 2.0) <= 2.0 * EQUIRECTANGULAR_ASPECT_TOLERANCE


def _has_gpano(head: bytes) -> bool:
    return bool(head) and (b"GPano" in head or b"gpano" in head.lower())


def xmp_heading(head: bytes) -> float | None:
    """The compass heading of the panorama's centre column from GPano XMP, when present."""
    match = _GPANO_HEADING.search(head) if _has_gpano(head) else None
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


# The sampling of a view depends on its yaw only through a shift of columns: turning about the
# vertical axis adds the same longitude to every pixel. So the trigonometry is done once per
# geometry (size, field of view, pitch, panorama size) and each yaw costs a shift, a floor and the
# weights: about 4 ms for four 224-pixel views against 13 ms from scratch. Views aimed along each
# street differ at every location, so this is the common case when fetching imagery.
@lru_cache(maxsize=8)
def _view_grid(width: int, height: int, pitch: float, fov: float, size: int):
    """For a view at yaw 0: each pixel's panorama column, and its two rows with their weight."""
    import numpy as np

    lon, lat = view_directions(0.0, pitch, fov, size)
    column = ((lon / (2 * math.pi) + 0.5) * width - 0.5).reshape(-1)
    row = ((0.5 - lat / math.pi) * height - 0.5).reshape(-1)
    top = np.floor(row)
    fy = row - top
    top = top.astype(np.int64)
    # Latitude stops at the poles.
    upper = np.clip(top, 0, height - 1) * width
    lower = np.clip(top + 1, 0, height - 1) * width
    return _read_only(column, upper, lower, fy)


def _read_only(*arrays):
    """Cached arrays are shared by every later call: a write to one must fail, not spread."""
    for array in arrays:
        array.setflags(write=False)
    return arrays


# A plan holds int32 indices and float32 weights for every pixel of every view: about 52 MB for
# four 640-pixel views. Only the repeats (panoramas without a bearing share one geometry) are
# worth keeping; the views' grid above is what every yaw shares.
@lru_cache(maxsize=4)
def _sampling_plan(
    width: int, height: int, yaws: tuple[float, ...], pitch: float, fov: float, size: int
):
    """Flat pixel indices (int32) and bilinear weights (float32), V×4×pixels each."""
    import numpy as np

    base_column, upper, lower, fy = _view_grid(width, height, pitch, fov, size)
    # int32 indices gather faster (MAX_PIXELS keeps the engine's images below 2**31 pixels; a
    # larger array from another caller gets int64); both arrays are written in place, as the
    # products in float64 rounded to float32.
    index_type = np.int32 if width * height < 2**31 else np.int64
    indices = np.empty((len(yaws), 4, base_column.size), dtype=index_type)
    weights = np.empty((len(yaws), 4, base_column.size), dtype=np.float32)
    below = 1 - fy
    for view, yaw in enumerate(yaws):
        column = base_column + yaw / 360.0 * width
        left = np.floor(column)
        fx = column - left
        # Longitude wraps around.
        col0 = left.astype(np.int64) % width
        col1 = col0 + 1
        col1[col1 == width] = 0
        for corner, (row, col) in enumerate(
            ((upper, col0), (upper, col1), (lower, col0), (lower, col1))
        ):
            np.add(row, col, out=indices[view, corner], casting="unsafe")
        np.multiply(1 - fx, below, out=weights[view, 0], casting="same_kind")
        np.multiply(fx, below, out=weights[view, 1], casting="same_kind")
        np.multiply(1 - fx, fy, out=weights[view, 2], casting="same_kind")
        np.multiply(fx, fy, out=weights[view, 3], casting="same_kind")
    return _read_only(indices, weights)


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
    # np.take along the pixel axis and products written in place: half the time of fancy
    # indexing and fresh temporaries (6 against 12 ms for four 224-pixel views), same values.
    views = np.empty((count, indices.shape[2], 3), dtype=np.float32)
    part = np.empty_like(views)
    for corner in range(4):
        corner_pixels = np.take(flat, indices[:, corner], axis=0)
        np.multiply(corner_pixels, weights[:, corner, :, None], out=part if corner else views)
        if corner:
            views += part
    np.rint(views, out=views)
    np.clip(views, 0, 255, out=views)
    views = views.astype(np.uint8).reshape(count, size, size, 3)
    return torch.from_numpy(np.ascontiguousarray(views.transpose(0, 3, 1, 2)))
