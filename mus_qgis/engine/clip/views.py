"""Reading one image file into model-ready uint8 views, with a clear status for every failure."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from ..imagery.panorama import ViewSetting, is_equirectangular, perspective_views, xmp_heading

MAX_PIXELS = 250_000_000  # larger is a decompression bomb, not a street photo (16k×8k = 134M)
_HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class ImageFacts:
    """What the store remembers of a file so that it never needs to read it again."""

    digest: str
    kind: str  # "panorama" or "photo"
    width: int
    height: int
    heading: float | None  # compass heading of a panorama's centre column (XMP)


@dataclass
class PreparedImage:
    facts: ImageFacts | None
    key: str
    views: object | None  # uint8 tensor V×3×S×S, or None when cached or failed
    status: str  # "ok", "cached" or the reason it failed


def embedding_key(
    facts: ImageFacts, setting: ViewSetting, bearing: float | None, heading: float | None
) -> str:
    """The store key: the file's content plus, for a panorama, where its views point."""
    if facts.kind == "photo" or setting.centre_crop:
        return facts.digest
    return f"{facts.digest}@{yaw_offset(facts, bearing, heading):.1f}"


def yaw_offset(facts: ImageFacts, bearing: float | None, heading: float | None) -> float:
    """Yaw of the first view relative to the panorama's centre column.

    Views are aimed along the street only when both the street's bearing and the panorama's own
    heading (given by the caller or in its XMP) are known; otherwise they start at the centre.
    """
    heading = heading if heading is not None else facts.heading
    if bearing is None or heading is None:
        return 0.0
    return (bearing - heading) % 360.0


def read_facts(data: bytes, setting: ViewSetting, name: str = "the image"):
    """Facts and an opened (not yet decoded) image, or a failure status naming ``name``."""
    from PIL import Image, UnidentifiedImageError

    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        with warnings.catch_warnings():
            # Above Pillow's MAX_IMAGE_PIXELS it only warns (a 16k×8k panorama is there); at
            # twice that it refuses, and that limit is kept: such a file is a decompression bomb.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None, None, f"error: image {name} is not a readable image (unknown format)"
    except Image.DecompressionBombError:
        return None, None, _too_large(name, 2 * (Image.MAX_IMAGE_PIXELS or 0))
    except (OSError, ValueError, SyntaxError) as exc:
        return None, None, f"error: image {name} is not a readable image ({exc})"
    width, height = image.size
    if width * height > MAX_PIXELS:
        return None, None, _too_large(name, MAX_PIXELS, f"{width}×{height}")
    head = data[:_HEAD_BYTES]
    panorama = not setting.centre_crop and is_equirectangular(width, height, head)
    kind = "panorama" if panorama else "photo"
    heading = xmp_heading(head) if panorama else None
    return ImageFacts(digest, kind, width, height, heading), image, "ok"


def _too_large(name: str, limit: int, size: str = "") -> str:
    shown = f" ({size} pixels)" if size else ""
    return (
        f"error: image {name}{shown} is larger than Pillow's decompression-bomb limit of "
        f"{limit:,} pixels: not read; scale it down if it is a real photo"
    )


def prepare_image(
    path: str,
    setting: ViewSetting,
    preprocess: dict,
    known_keys,
    bearing: float | None = None,
    heading: float | None = None,
    fast_decode: bool = True,
) -> PreparedImage:
    """Read, hash and (unless its embedding is stored) decode and cut one image file.

    Every failure is a status naming the file (``error: image PATH ...``), never an exception.
    """
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return PreparedImage(None, "", None, f"error: image {path} does not exist")
    except IsADirectoryError:
        return PreparedImage(None, "", None, f"error: image {path} is a folder, not a file")
    except OSError as exc:
        return PreparedImage(
            None, "", None, f"error: image {path} cannot be read ({exc.strerror or exc})"
        )
    if not data:
        return PreparedImage(None, "", None, f"error: image {path} is empty (0 bytes)")
    facts, image, status = read_facts(data, setting, path)
    if facts is None:
        return PreparedImage(None, "", None, status)
    key = embedding_key(facts, setting, bearing, heading)
    if key in known_keys:
        return PreparedImage(facts, key, None, "cached")
    try:
        views = _decode_views(image, facts, setting, preprocess, bearing, heading, fast_decode)
    except (OSError, ValueError, SyntaxError) as exc:
        return PreparedImage(
            facts, key, None, f"error: image {path} is truncated or corrupt ({exc})"
        )
    except Image.DecompressionBombError:
        return PreparedImage(facts, key, None, _too_large(path, 2 * Image.MAX_IMAGE_PIXELS))
    return PreparedImage(facts, key, views, "ok")


def _decode_views(image, facts, setting, preprocess, bearing, heading, fast_decode):
    import numpy as np
    import torch
    from PIL import ImageOps

    size = int(
        preprocess["size"][0]
        if isinstance(preprocess["size"], tuple | list)
        else preprocess["size"]
    )
    if facts.kind == "panorama":
        if fast_decode and image.format == "JPEG":
            # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale: a big panorama costs far less.
            needed = setting.panorama_width_needed(size)
            image.draft("RGB", (needed, needed // 2))
        offset = yaw_offset(facts, bearing, heading)
        return perspective_views(
            _to_rgb(image), setting.yaws(offset), setting.pitch, setting.fov, size
        )
    image = ImageOps.exif_transpose(decoded_photo(image, size, fast_decode))
    square = _resize_and_crop(image, size, preprocess)
    # Made channels-first by numpy, on this decoding thread alone (see perspective_views).
    return torch.from_numpy(np.ascontiguousarray(_to_rgb(square).transpose(2, 0, 1)[None]))


def decoded_photo(image, size: int, fast_decode: bool = True):
    """A photo decoded for views of ``size`` pixels.

    With ``fast_decode`` a JPEG is decoded in draft mode, at the smallest of 1/1, 1/2, 1/4, 1/8
    scale that still covers ``size`` on its short side: several times faster on big photos, and
    scores differ from a full decode by about 1e-4 (the resize then starts from fewer pixels).
    Without it every image is decoded at full resolution. Other formats have no draft mode.
    """
    if fast_decode and image.format == "JPEG":
        short = min(image.size)
        image.draft("RGB", (image.size[0] * size // short, image.size[1] * size // short))
    image.load()
    return image


def _resize_and_crop(image, size: int, preprocess: dict):
    """open_clip's inference transform (resize, then centre crop), done on a PIL image."""
    from PIL import Image

    resample = Image.BILINEAR if preprocess.get("interpolation") == "bilinear" else Image.BICUBIC
    image.load()
    width, height = image.size
    if preprocess.get("resize_mode", "shortest") == "squash":
        return image.resize((size, size), resample)
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    if new_size != image.size:
        image = image.resize(new_size, resample)
    left = round((new_size[0] - size) / 2.0)
    top = round((new_size[1] - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def _to_rgb(image):
    """An RGB uint8 array from any mode: grey, 16-bit, palette, CMYK, with or without alpha."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max() or 1.0
        grey = (values / top * 255.0).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent parts become white, as most viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.array(image.convert("RGB"))
