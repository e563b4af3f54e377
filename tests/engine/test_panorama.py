"""Panorama views are checked geometrically: a mark at a known direction lands where it should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mus_qgis.engine.imagery.panorama import (
    ViewSetting,
    is_equirectangular,
    perspective_views,
    view_directions,
    xmp_heading,
)

WIDTH, HEIGHT, SIZE = 1440, 720, 101


def panorama_with_mark(lon: float, lat: float, radius_deg: float = 2.0) -> torch.Tensor:
    """A black equirectangular image with a white disc centred at (lon, lat) degrees."""
    cols = (np.arange(WIDTH) + 0.5) / WIDTH * 360.0 - 180.0
    rows = 90.0 - (np.arange(HEIGHT) + 0.5) / HEIGHT * 180.0
    lon_grid, lat_grid = np.meshgrid(cols, rows)
    lon_r, lat_r = np.radians(lon_grid), np.radians(lat_grid)
    centre = np.array(
        [
            math.cos(math.radians(lat)) * math.sin(math.radians(lon)),
            math.sin(math.radians(lat)),
            math.cos(math.radians(lat)) * math.cos(math.radians(lon)),
        ]
    )
    points = np.stack([np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r), np.cos(lat_r) * np.cos(lon_r)])
    angle = np.degrees(np.arccos(np.clip(np.tensordot(centre, points, 1), -1, 1)))
    image = np.where(angle <= radius_deg, 255, 0).astype(np.uint8)
    return torch.from_numpy(np.repeat(image[:, :, None], 3, axis=2).copy())


def mark_centre(view: torch.Tensor) -> tuple[float, float] | None:
    """(column, row) of the bright pixels' centroid in a 3×S×S view, or None if there are none."""
    bright = view[0].numpy() > 127
    if not bright.any():
        return None
    rows, cols = np.nonzero(bright)
    return float(cols.mean()), float(rows.mean())


def expected_pixel(yaw_view: float, pitch_view: float, lon: float, lat: float, fov: float):
    """Where the gnomonic projection puts a direction, computed independently of the engine."""
    direction = np.array(
        [
            math.cos(math.radians(lat)) * math.sin(math.radians(lon)),
            math.sin(math.radians(lat)),
            math.cos(math.radians(lat)) * math.cos(math.radians(lon)),
        ]
    )
    yaw, pitch = math.radians(yaw_view), math.radians(pitch_view)
    forward = np.array(
        [math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw)]
    )
    right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    up = np.cross(forward, right)
    focal = (SIZE / 2) / math.tan(math.radians(fov) / 2)
    depth = direction @ forward
    return SIZE / 2 + focal * (direction @ right) / depth - 0.5, SIZE / 2 - focal * (
        direction @ up
    ) / depth - 0.5


@pytest.mark.parametrize(
    ("lon", "lat", "yaw", "pitch", "fov"),
    [
        (90.0, 0.0, 90.0, 0.0, 90.0),  # straight ahead
        (90.0, 0.0, 60.0, 0.0, 90.0),  # 30° to the right of the view's centre
        (-120.0, 20.0, -100.0, 0.0, 90.0),  # left and up
        (10.0, 35.0, 0.0, 30.0, 90.0),  # a tilted view
        (45.0, -10.0, 30.0, -5.0, 60.0),  # a narrower view
    ],
)
def test_a_mark_lands_where_the_projection_says(lon, lat, yaw, pitch, fov):
    views = perspective_views(panorama_with_mark(lon, lat), [yaw], pitch, fov, SIZE)
    assert views.shape == (1, 3, SIZE, SIZE) and views.dtype == torch.uint8
    found = mark_centre(views[0])
    want = expected_pixel(yaw, pitch, lon, lat, fov)
    assert found is not None
    assert abs(found[0] - want[0]) < 1.0 and abs(found[1] - want[1]) < 1.0


def test_a_mark_behind_the_view_is_not_seen_and_the_seam_wraps():
    panorama = panorama_with_mark(180.0, 0.0, radius_deg=4.0)
    views = perspective_views(panorama, [0.0, 180.0, -180.0], 0.0, 90.0, SIZE)
    assert mark_centre(views[0]) is None
    for view in views[1:]:
        column, row = mark_centre(view)
        # Both halves of the disc, left and right of the seam, are in the view.
        assert abs(column - (SIZE - 1) / 2) < 0.5 and abs(row - (SIZE - 1) / 2) < 0.5
        bright_columns = np.nonzero(view[0].numpy().max(axis=0) > 127)[0]
        assert bright_columns.min() <= SIZE // 2 - 3 and bright_columns.max() >= SIZE // 2 + 3


def test_view_centre_looks_along_yaw_and_pitch():
    lon, lat = view_directions(37.0, 12.0, 90.0, 3)
    assert np.degrees(lon[1, 1].item()) == pytest.approx(37.0, abs=1e-9)
    assert np.degrees(lat[1, 1].item()) == pytest.approx(12.0, abs=1e-9)


def test_view_setting_yaws_keys_and_limits():
    setting = ViewSetting()
    assert setting.yaws() == [0.0, 90.0, 180.0, 270.0]
    assert setting.yaws(100.0) == [100.0, 190.0, 280.0, 10.0]
    assert setting.key == "views4-fov90-pitch0"
    assert ViewSetting(centre_crop=True).key == "centre-crop"
    # A 224-pixel 90° view needs a panorama about 704 pixels wide.
    assert setting.panorama_width_needed(224) == 704
    for bad in ({"count": 0}, {"fov": 170.0}, {"pitch": 95.0}):
        with pytest.raises(ValueError):
            ViewSetting(**bad)


def test_equirectangular_recognised_by_shape_or_xmp():
    assert is_equirectangular(4096, 2048)
    assert is_equirectangular(5376, 2688)
    assert not is_equirectangular(640, 480)
    xmp = (
        b'<x:xmpmeta><rdf:Description GPano:ProjectionType="equirectangular" '
        b'GPano:PoseHeadingDegrees="123.5"/></x:xmpmeta>'
    )
    assert is_equirectangular(3000, 1400, xmp)
    assert xmp_heading(xmp) == pytest.approx(123.5)
    assert xmp_heading(b"<GPano:PoseHeadingDegrees>-90</GPano:PoseHeadingDegrees>") == 270.0
    assert xmp_heading(b"nothing here") is None


def bilinear_views_by_definition(panorama: np.ndarray, yaws, pitch: float, fov: float, size: int):
    """Each view pixel's ray turned by pitch, then yaw; the panorama sampled there bilinearly,
    in float64, longitude wrapping and latitude clamped: written out here, sharing no code with
    the engine's cached sampling plans."""
    height, width = panorama.shape[:2]
    focal = (size / 2) / math.tan(math.radians(fov) / 2)
    offsets = np.arange(size) + 0.5 - size / 2
    down, right = np.meshgrid(offsets, offsets, indexing="ij")
    rays = np.stack([right, -down, np.full_like(right, focal)], axis=-1)
    p = math.radians(pitch)
    tilt = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    image = panorama.astype(np.float64)
    views = []
    for yaw in yaws:
        y = math.radians(yaw)
        turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        x, up, z = np.moveaxis(rays @ tilt.T @ turn.T, -1, 0)
        column = (np.arctan2(x, z) / (2 * math.pi) + 0.5) * width - 0.5
        row = (0.5 - np.arctan2(up, np.hypot(x, z)) / math.pi) * height - 0.5
        c0, r0 = np.floor(column).astype(int), np.floor(row).astype(int)
        fc, fr = (column - c0)[..., None], (row - r0)[..., None]
        left, right_ = c0 % width, (c0 + 1) % width
        top, bottom = np.clip(r0, 0, height - 1), np.clip(r0 + 1, 0, height - 1)
        value = (image[top, left] * (1 - fc) + image[top, right_] * fc) * (1 - fr) + (
            image[bottom, left] * (1 - fc) + image[bottom, right_] * fc
        ) * fr
        views.append(np.rint(value).transpose(2, 0, 1))
    return np.stack(views)


@pytest.mark.parametrize(
    ("offset", "pitch", "fov", "width"),
    [
        (0.0, 0.0, 90.0, 1024),
        (33.3, 0.0, 90.0, 1440),
        (271.9, 15.0, 60.0, 700),
        (5.5, -40.0, 120.0, 512),
    ],
)
def test_views_equal_bilinear_sampling_by_definition(offset, pitch, fov, width):
    # Views aimed along a street turn by any angle: the engine shifts one cached grid by the
    # yaw instead of computing each view's rays again, and must sample the same pixels.
    rng = np.random.default_rng(int(offset * 10))
    panorama = rng.integers(0, 256, (width // 2, width, 3), dtype=np.uint8)
    yaws = [(offset + k * 90.0) % 360.0 for k in range(4)]
    got = perspective_views(panorama, yaws, pitch, fov, 64).numpy().astype(int)
    want = bilinear_views_by_definition(panorama, yaws, pitch, fov, 64)
    difference = np.abs(got - want)
    # float32 weights against float64: a value may round the other way at exactly .5.
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3
    # The same turn asked again (a cached plan) gives the same views.
    again = perspective_views(panorama, yaws, pitch, fov, 64).numpy().astype(int)
    assert np.array_equal(got, again)


@pytest.mark.parametrize("prefix", [b"GPano", b"gpano", b"GPANO"])
def test_gpano_xmp_is_read_in_any_letter_case(prefix):
    head = b"\xff\xd8 <x:xmpmeta> " + prefix + b':ProjectionType="equirectangular" '
    head += prefix + b':PoseHeadingDegrees="271.5" </x:xmpmeta>' + bytes(70_000)
    assert is_equirectangular(1000, 700, head)  # not 2:1, a panorama by its XMP
    assert xmp_heading(head) == pytest.approx(271.5)
    assert not is_equirectangular(1000, 700, b"\xff\xd8 no metadata" + bytes(70_000))
    assert xmp_heading(b"\xff\xd8 no metadata") is None
