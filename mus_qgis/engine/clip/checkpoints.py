"""What a checkpoint file is, when open_clip cannot load it: said in the user's words.

open_clip's own errors for a bad checkpoint name its internals ("pop from empty list", "text
pos_embed width changed!"). This module looks at the file instead: a file that is no checkpoint
(empty, cut short, a text file, an HTML page or a Git LFS pointer saved instead of the weights),
or a checkpoint whose weights' shapes fit another architecture, named where open_clip knows one.
It runs only after a load failed, so a good checkpoint costs nothing; a PyTorch zip checkpoint is
memory-mapped and a safetensors file read by its header only, so a large one costs little.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

_MODEL_CHOICE = "MODEL in QGIS, --model on the command line"


class _NotACheckpoint(Exception):  # noqa: N818 (a verdict carried out of the reader)
    pass


def checkpoint_problem(path: Path, name: str) -> str:
    """Why the checkpoint file ``path`` cannot give the open_clip model ``name`` its weights, as
    a whole message; "" when the file looks like a checkpoint of ``name`` (or cannot be told)."""
    try:
        shapes = _checkpoint_shapes(path)
    except _NotACheckpoint as exc:
        return f"The checkpoint file {path} {exc}"
    except Exception:  # a reader's surprise: say nothing rather than something wrong
        return ""
    try:
        return _architecture_problem(path, name, shapes)
    except Exception:
        return ""


def _checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each weight's shape, read from a PyTorch checkpoint (zip or older pickle format) or a
    safetensors file; raises :class:`_NotACheckpoint` saying what the file is instead."""
    size = path.stat().st_size
    if size == 0:
        raise _NotACheckpoint(
            "is empty (0 bytes): its download or copy did not finish. Download it again."
        )
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return _zip_shapes(path, size)
    header_length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and header_length < (1 << 27):
        return _safetensors_shapes(path, size, header_length)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _state_dict_shapes(_torch_load(path, size, mmap=False))
    raise _NotACheckpoint(_what_else(head))


def _zip_shapes(path: Path, size: int) -> dict[str, tuple[int, ...]]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        raise _NotACheckpoint(
            f"is cut short or damaged ({size:,} bytes): it begins as a PyTorch checkpoint (a zip "
            "archive), but its end is missing or broken, as when a download or copy did not "
            "finish. Download it again."
        ) from None
    if not any(name.endswith("data.pkl") for name in names):
        raise _NotACheckpoint(
            "is a zip archive, not a PyTorch checkpoint (it holds no data.pkl): unpack it and "
            "give the checkpoint inside."
        )
    return _state_dict_shapes(_torch_load(path, size, mmap=True))


def _torch_load(path: Path, size: int, mmap: bool):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise _NotACheckpoint(
                "holds Python objects besides weights, which are not loaded, since loading them "
                "could run any code: give a checkpoint of the weights alone (a state dict, as "
                "open_clip's published checkpoints are)."
            ) from None
        raise _NotACheckpoint(_damaged(size, exc)) from None
    except (EOFError, RuntimeError, ValueError, OSError) as exc:
        raise _NotACheckpoint(_damaged(size, exc)) from None


def _damaged(size: int, exc: Exception) -> str:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return (
        f"is damaged or cut short ({size:,} bytes): PyTorch cannot read it ({reason}). Download "
        "it again."
    )


def _safetensors_shapes(path: Path, size: int, header_length: int):
    if 8 + header_length > size:
        raise _NotACheckpoint(
            f"is cut short ({size:,} bytes): it begins as a safetensors file, but its end is "
            "missing, as when a download or copy did not finish. Download it again."
        )
    with path.open("rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_length))
        except ValueError:
            raise _NotACheckpoint(_damaged(size, ValueError("its header is not JSON"))) from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    end = max((int(v.get("data_offsets", [0, 0])[1]) for v in tensors.values()), default=0)
    if 8 + header_length + end > size:
        raise _NotACheckpoint(
            f"is cut short ({size:,} bytes of the {8 + header_length + end:,} its header "
            "announces): its download or copy did not finish. Download it again."
        )
    if path.suffix.lower() != ".safetensors":
        raise _NotACheckpoint(
            "is a safetensors file, which open_clip reads only under a name that ends in "
            f".safetensors: rename it to {path.stem}.safetensors."
        )
    return _unprefixed({k: tuple(v.get("shape", ())) for k, v in tensors.items()})


def _state_dict_shapes(loaded) -> dict[str, tuple[int, ...]]:
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    shapes = (
        {str(k): tuple(v.shape) for k, v in loaded.items() if hasattr(v, "shape")}
        if isinstance(loaded, dict)
        else {}
    )
    if not shapes:
        what = f"a {type(loaded).__name__}" if not isinstance(loaded, dict) else "no tensor"
        raise _NotACheckpoint(
            f"is a PyTorch file, but holds no model weights ({what}): give the model's "
            "checkpoint (its state dict)."
        )
    return _unprefixed(shapes)


def _unprefixed(shapes: dict) -> dict:
    """As open_clip reads them: a checkpoint saved from DistributedDataParallel has 'module.'."""
    if shapes and next(iter(shapes)).startswith("module."):
        return {k[len("module.") :]: v for k, v in shapes.items()}
    return shapes


def _what_else(head: bytes) -> str:
    """What a file that is no checkpoint is, from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lowered = text[:1024].lower()
    if text.startswith(b"version https://git-lfs"):
        return (
            "is a Git LFS pointer (a small text file that stands for the weights), not the "
            "weights: the model was cloned without Git LFS. Download the file itself (on "
            "Hugging Face, the file's download link), or run 'git lfs pull' in the clone."
        )
    if lowered.startswith((b"<!doctype html", b"<html", b"<head")) or b"<html" in lowered:
        return (
            "is an HTML page, not a PyTorch checkpoint: a web page (a sign-in, error or "
            "download page) was saved instead of the file. Download the file itself (on "
            "Hugging Face, the download link beside open_clip_pytorch_model.bin or "
            "open_clip_model.safetensors)."
        )
    if b"\0" not in head:
        try:
            first = head.decode("utf-8").strip().splitlines()[0][:60]
        except (UnicodeDecodeError, IndexError):
            first = None
        if first is not None:
            return (
                f"is a text file (it begins {first!r}), not a PyTorch checkpoint. Give the "
                "model's weights file (.pt, .pth, .bin or .safetensors)."
            )
    return (
        "is not a PyTorch checkpoint: it is neither in PyTorch's format (a zip archive, or the "
        "older pickle) nor safetensors. Give the model's weights file (.pt, .pth, .bin or "
        ".safetensors), downloaded again if it was."
    )


# -- the architecture the shapes tell --------------------------------------------------------


def _architecture_problem(path: Path, name: str, shapes: dict) -> str:
    """ "" when the weights fit ``name`` as far as their shapes tell; else what they are, where
    they differ, and the open_clip models they fit."""
    import open_clip

    ours = _shapes_signature(shapes)
    config = open_clip.get_model_config(name)
    theirs = _config_signature(config) if config else None
    if not ours or not theirs or ours == theirs:
        return ""
    parts = [_compare(part, ours.get(part), theirs.get(part), name) for part in _PARTS]
    fits = []
    if None not in ours.values():
        for other in open_clip.list_models():
            other_config = open_clip.get_model_config(other)
            if other != name and other_config and _config_signature(other_config) == ours:
                fits.append(other)
    if fits:
        listed = ", ".join(fits[:6]) + (f" and {len(fits) - 6} more" if len(fits) > 6 else "")
        advice = (
            f"It fits open_clip's {listed}: give that as the model ({_MODEL_CHOICE}), or a "
            f"checkpoint of {name}."
        )
    else:
        advice = (
            "No model open_clip knows here has these shapes: give the architecture it was "
            "trained as (a JSON config file for one of your own), or a checkpoint of "
            f"{name}."
        )
    return (
        f"The checkpoint file {path} holds the weights of another architecture than {name}: "
        f"{', '.join(parts)}. {advice}"
    )


_PARTS = ("image tower", "text tower", "embedding")


def _compare(part: str, ours, theirs, name: str) -> str:
    """The checkpoint's part in words, with the model's where it differs: "a ViT image tower of
    width 64, 2 layers, ... (ViT-B-32: width 768, 12 layers)"."""
    kind, fields = _fields(part, ours)
    if ours == theirs:
        return f"{kind}{' of ' if fields else ''}{', '.join(fields)}"
    their_kind, their_fields = _fields(part, theirs)
    if their_kind != kind:
        differing = [their_kind, *their_fields]
    else:
        differing = [b for a, b in zip(fields, their_fields) if a != b]
    return f"{kind}{' of ' if fields else ''}{', '.join(fields)} ({name}: {', '.join(differing)})"


def _fields(part: str, value) -> tuple[str, list[str]]:
    if value is None:
        return f"an {part} of a kind the shapes do not tell", []
    if part == "embedding":
        return "embeddings", [f"{value} numbers"]
    if part == "text tower":
        width, layers, context, vocabulary = value
        fields = [f"{context} tokens", f"a vocabulary of {vocabulary:,}"]
        return "a text tower", [f"width {width}", f"{layers} layers", *fields]
    if value[0] == "ViT":
        _, width, layers, patch, size = value
        fields = [f"{patch}-pixel patches", f"{size}-pixel images"]
        return "a ViT image tower", [f"width {width}", f"{layers} layers", *fields]
    _, width, blocks, size = value
    blocks = "-".join(map(str, blocks))
    return "a ResNet image tower", [f"width {width}", f"blocks {blocks}", f"{size}-pixel images"]


def _layer_count(shapes: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for key in shapes if (m := pattern.match(key))}
    return max(found) + 1 if found else 0


def _shapes_signature(shapes: dict) -> dict | None:
    """The image tower, text tower and embedding size that weights' shapes tell (a part None
    when it is of a kind this does not read: a timm or Hugging Face tower)."""
    image = None
    conv = shapes.get("visual.conv1.weight")
    if conv and len(conv) == 4 and "visual.transformer.resblocks.0.ln_1.weight" in shapes:
        positions = shapes.get("visual.positional_embedding", (0,))[0]
        grid = math.isqrt(positions - (1 if "visual.class_embedding" in shapes else 0))
        layers = _layer_count(shapes, "visual.transformer.resblocks.")
        image = ("ViT", conv[0], layers, conv[2], grid * conv[2])
    elif conv and "visual.layer1.0.conv1.weight" in shapes:
        blocks = tuple(_layer_count(shapes, f"visual.layer{i}.") for i in range(1, 5))
        positions = shapes.get("visual.attnpool.positional_embedding", (1,))[0]
        image = ("ResNet", conv[0] * 2, blocks, math.isqrt(positions - 1) * 32)
    text = None
    for prefix in ("", "text."):
        tokens = shapes.get(f"{prefix}token_embedding.weight")
        positions = shapes.get(f"{prefix}positional_embedding")
        if tokens and positions:
            layers = _layer_count(shapes, f"{prefix}transformer.resblocks.")
            text = (tokens[1], layers, positions[0], tokens[0])
            break
    projection = (
        shapes.get("visual.proj")
        or shapes.get("text_projection")
        or shapes.get("text.text_projection")
    )
    embedding = projection[-1] if projection and len(projection) == 2 else None
    if image is None and text is None:
        return None
    return {"image tower": image, "text tower": text, "embedding": embedding}


def _config_signature(config: dict) -> dict | None:
    """The same, from an open_clip model config (its defaults where the config is silent)."""
    from dataclasses import fields

    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    def with_defaults(kind, given: dict) -> dict:
        return {**{f.name: f.default for f in fields(kind)}, **given}

    if "multimodal_cfg" in config:  # CoCa: a text decoder beside the towers, not told here
        return None
    vision = with_defaults(CLIPVisionCfg, config.get("vision_cfg", {}))
    text = with_defaults(CLIPTextCfg, config.get("text_cfg", {}))
    size = vision["image_size"]
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            return None
        size = size[0]
    image = None
    if vision.get("timm_model_name"):
        image = None
    elif isinstance(vision["layers"], (list, tuple)):
        image = ("ResNet", vision["width"], tuple(vision["layers"]), size)
    else:
        image = ("ViT", vision["width"], vision["layers"], vision["patch_size"], size)
    tower = None
    if not text.get("hf_model_name"):
        tower = (text["width"], text["layers"], text["context_length"], text["vocab_size"])
    return {"image tower": image, "text tower": tower, "embedding": config.get("embed_dim")}
