"""The diffusion model: a diffusers model id (downloaded once into the cache) or a local folder.

Both end as a folder on disk loaded by the same call, so a test's tiny pipeline saved with
``save_pretrained`` goes the way a downloaded model does. The identity and revision that name
the cached dreams come from that folder: the Hub's commit for a download, a digest of the files
for a local folder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ...shared.defaults import DEFAULT_DREAM_MODEL
from ...shared.errors import ModelError
from ..deps import require

# A distilled one-step model: one step at 512×512, a few seconds a dream on a CPU (README: licence).
_KEEP = 2
_loaded: OrderedDict = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class DreamModelSpec:
    model: str = DEFAULT_DREAM_MODEL
    revision: str = ""  # a Hub branch, tag or commit; empty: the newest
    device: str = "auto"


@dataclass
class DreamPipeline:
    spec: DreamModelSpec
    folder: Path
    identity: str  # the model id, or the local folder's name
    revision: str  # the Hub commit, or a digest of the local folder's files
    image_to_image: object
    text_to_image: object
    device: str
    dtype: str

    def record(self) -> dict:
        """What the run settings say of the model."""
        return {
            "dream_model": self.identity,
            "dream_model_revision": self.revision,
            "dream_device": self.device,
            "dream_precision": self.dtype,
        }


def dream_model_folder(cache_dir) -> Path:
    return Path(cache_dir) / "models" / "diffusers"


def is_local(model: str) -> bool:
    """A path (absolute, relative with ./, ~, or an existing folder), not a Hub id."""
    text = model.strip()
    return text.startswith(("/", ".", "~", "\\")) or Path(text).expanduser().exists()


def resolve_folder(spec: DreamModelSpec, cache_dir) -> tuple[Path, str, str]:
    """(folder, identity, revision) of the model, downloading it into the cache if needed."""
    model = spec.model.strip()
    if not model:
        raise ModelError("No diffusion model given: name a diffusers model id or a local folder.")
    if is_local(model):
        folder = Path(model).expanduser()
        check_model_folder(folder)
        return folder, folder.name, folder_digest(folder)
    require("diffusers")
    from diffusers import DiffusionPipeline

    try:
        folder = Path(
            DiffusionPipeline.download(
                model,
                cache_dir=str(dream_model_folder(cache_dir)) if cache_dir else None,
                revision=spec.revision or None,
            )
        )
    except (OSError, ValueError) as exc:
        from ..clip.models import _offline_reason

        offline = _offline_reason()
        why = f" and it cannot be downloaded now ({offline})" if offline else ""
        raise ModelError(
            f"The diffusion model {model!r} is neither a local folder nor in the cache "
            f"{dream_model_folder(cache_dir) if cache_dir else '(none)'}{why}. Check the id "
            "(e.g. stabilityai/sd-turbo), go online once to download it, or give the folder "
            f"of a diffusers model. ({str(exc).splitlines()[0][:300]})"
        ) from None
    check_model_folder(folder)
    # The Hub's cache keeps each download under snapshots/<commit>.
    return folder, model, folder.name


def check_model_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelError(f"The diffusion model folder {folder} does not exist.")
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(
            f"The folder {folder} is not a diffusers model: it has no model_index.json. Give "
            "the folder a diffusers pipeline was saved to (save_pretrained), or a model id."
        )
    try:
        json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The model_index.json in {folder} cannot be read ({exc}).") from None


def folder_digest(folder: Path) -> str:
    """A local model's revision: its configs' contents and every file's name and size."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}:{path.stat().st_size}\n".encode())
        if path.suffix in (".json", ".txt"):
            digest.update(path.read_bytes())
    return "local-" + digest.hexdigest()[:16]


def load_dream_pipeline(spec: DreamModelSpec, cache_dir=None) -> DreamPipeline:
    """Both pipelines (image-to-image, text-to-image) over one set of weights, kept warm."""
    require("torch", "diffusers", "transformers")
    from ..clip.models import resolve_device

    device = resolve_device(spec.device)
    folder, identity, revision = resolve_folder(spec, cache_dir)
    key = (str(folder), revision, device)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        loaded = _create(spec, folder, identity, revision, device)
        _loaded[key] = loaded
        while len(_loaded) > _KEEP:
            _loaded.popitem(last=False)
        return loaded


def _create(spec, folder: Path, identity: str, revision: str, device: str) -> DreamPipeline:
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # No "install accelerate" advice nor loading bars in the user's log (the log is QGIS's).
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # Half precision on a GPU (twice as fast, half the memory); the CPU needs full precision.
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        image_to_image = AutoPipelineForImage2Image.from_pretrained(
            str(folder), dtype=dtype, low_cpu_mem_usage=False
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ModelError(
            f"The folder {folder} could not be loaded as a diffusers pipeline for "
            f"image-to-image ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})."
        ) from None
    image_to_image = image_to_image.to(device)
    image_to_image.set_progress_bar_config(disable=True)
    text_to_image = AutoPipelineForText2Image.from_pipe(image_to_image)
    text_to_image.set_progress_bar_config(disable=True)
    return DreamPipeline(
        spec,
        folder,
        identity,
        revision,
        image_to_image,
        text_to_image,
        device,
        str(dtype).replace("torch.", ""),
    )


def forget_dream_pipelines() -> None:
    with _lock:
        _loaded.clear()
