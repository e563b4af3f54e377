"""OpenCLIP models: which one, on which device, and where its weights come from.

A model is named by its open_clip architecture and either a pretrained tag (downloaded once by
open_clip into the cache folder) or a local checkpoint file for machines without network. A loaded
model is kept for the rest of the session, so a second run does not load it again.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ...shared.defaults import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_PRETRAINED,
    DEVICES,
    PRECISIONS,
)
from ...shared.errors import ModelError
from ..deps import require

_KEEP_MODELS = 2
_UNTRAINED_SEED = 0

_loaded: OrderedDict[tuple, LoadedModel] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Which model to use. ``checkpoint`` (a local file) wins over ``pretrained`` (a tag).

    With neither, the model has random weights: useful for tests and timing, useless for answers.
    """

    name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    checkpoint: str = ""
    device: str = "auto"
    precision: str = DEFAULT_PRECISION

    @property
    def untrained(self) -> bool:
        return not self.pretrained and not self.checkpoint

    def describe(self) -> str:
        number = "" if self.precision == DEFAULT_PRECISION else f", in {self.precision}"
        if self.checkpoint:
            return f"{self.name} with weights from {self.checkpoint}{number}"
        if self.pretrained:
            return f"{self.name} ({self.pretrained}{number})"
        return f"{self.name} with random, untrained weights{number}"


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: object
    tokenizer: object
    device: object
    dtype: object
    identity: str
    preprocess: dict
    logit_scale: float

    @property
    def image_size(self) -> int:
        size = self.preprocess["size"]
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def untrained(self) -> bool:
        return self.spec.untrained

    def encode_images(self, pixels):
        """L2-normalised embeddings (float32, on the CPU) of a uint8 batch N×3×H×W."""
        import torch

        mean = torch.tensor(self.preprocess["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess["std"], device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            batch = pixels.to(self.device, non_blocking=True).float().div_(255.0)
            batch = batch.sub_(mean).div_(std).to(self.dtype)
            features = self.model.encode_image(batch).float()
            features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu()

    def encode_texts(self, texts: list[str], batch_size: int = 256):
        """L2-normalised embeddings (float32, on the CPU) of the given prompts."""
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)
                features = self.model.encode_text(tokens).float()
                parts.append(torch.nn.functional.normalize(features, dim=-1).cpu())
        return torch.cat(parts)


# bf16: every weight and activation in bfloat16 (open_clip's "pure" mode): on a CPU with AMX
# the matrix products run natively, 5 times faster than float32 in the measurement,
# whereas open_clip's mixed mode casts back and forth and was slower than float32 there.
# fp16: open_clip's mixed mode (layer norms in float32), as OpenAI's CLIP runs on a GPU.
_OPEN_CLIP_PRECISION = {"fp32": "fp32", "bf16": "pure_bf16", "fp16": "fp16"}
_TORCH_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def precision_of(settings: dict) -> str:
    """The precision setting a layer's run settings record (as torch's dtype name, "bfloat16";
    a layer classified before the setting existed was float32 on the CPU)."""
    recorded = str(settings.get("precision") or "float32")
    by_dtype = {dtype: name for name, dtype in _TORCH_DTYPE.items()}
    return by_dtype.get(recorded, recorded if recorded in PRECISIONS else DEFAULT_PRECISION)


def check_precision(precision: str, device: str) -> None:
    """A precision the device can run, or an error that says which it can."""
    if precision not in PRECISIONS:
        raise ModelError(
            f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)} (fp32: exact)."
        )
    if precision == "fp16" and device == "cpu":
        raise ModelError(
            "fp16 runs on a GPU (CUDA) or Apple's MPS, not on the CPU: choose bf16 (fast on CPUs "
            "with AMX; mus:enginestatus says whether this one is) or fp32."
        )


def resolve_device(requested: str = "auto") -> str:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is an error."""
    require("torch")
    import torch

    requested = (requested or "auto").lower()
    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise ModelError(f"Unknown device {requested!r}; use one of {', '.join(DEVICES)}.")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("CUDA was asked for, but torch sees no CUDA GPU here. Use auto or cpu.")
    if requested == "mps" and not has_mps:
        raise ModelError("Apple MPS was asked for, but it is not available here. Use auto or cpu.")
    return requested


def known_models() -> list[str]:
    require("open_clip")
    import open_clip

    return open_clip.list_models()


def pretrained_tags(name: str) -> list[str]:
    require("open_clip")
    import open_clip

    return open_clip.list_pretrained_tags_by_model(name)


def load_model(spec: ModelSpec, cache_dir: str | Path | None = None) -> LoadedModel:
    """Create (or reuse from this session) the model ``spec`` names."""
    require("torch", "open_clip")
    device = resolve_device(spec.device)
    check_precision(spec.precision, device)
    checkpoint_id = _checkpoint_identity(spec.checkpoint) if spec.checkpoint else ""
    key = (spec.name, spec.pretrained, checkpoint_id, device, spec.precision)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        loaded = _create(spec, device, checkpoint_id, cache_dir)
        _loaded[key] = loaded
        while len(_loaded) > _KEEP_MODELS:
            _loaded.popitem(last=False)
        return loaded


def forget_models() -> None:
    """Drop the models kept for reuse (frees their memory)."""
    with _lock:
        _loaded.clear()


def _create(spec: ModelSpec, device: str, checkpoint_id: str, cache_dir) -> LoadedModel:
    import open_clip
    import torch

    name = _register_config_file(spec.name)
    _check_name(name)
    kwargs = {"device": device, "precision": _OPEN_CLIP_PRECISION[spec.precision]}
    if cache_dir:
        kwargs["cache_dir"] = str(cache_dir)
    if spec.checkpoint:
        path = Path(spec.checkpoint)
        if not path.is_file():
            raise ModelError(f"The checkpoint file {path} does not exist.")
        pretrained, identity = str(path), f"{name}/file-{checkpoint_id}"
    elif spec.pretrained:
        _check_weights_reachable(name, spec.pretrained, cache_dir)
        pretrained, identity = spec.pretrained, f"{name}/{spec.pretrained}"
    else:
        pretrained, identity = None, f"{name}/random-seed{_UNTRAINED_SEED}"
    if spec.precision != DEFAULT_PRECISION:
        # Part of the identity: embeddings of two number formats never share a store entry.
        identity = f"{identity}@{spec.precision}"
    try:
        # Random weights are seeded so that stored embeddings of an untrained model stay valid.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_UNTRAINED_SEED)
            model, _, _ = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, **kwargs
            )
    except ModelError:
        raise
    except Exception as exc:
        # open_clip's words for a bad checkpoint name its internals ("pop from empty list"):
        # say what the file is instead, and which model its weights fit.
        problem = ""
        if spec.checkpoint:
            from .checkpoints import checkpoint_problem

            problem = checkpoint_problem(Path(spec.checkpoint), name)
        raise ModelError(problem or f"Could not create {spec.describe()}: {exc}") from exc
    model.eval()
    preprocess = dict(model.visual.preprocess_cfg)
    if preprocess.get("resize_mode", "shortest") not in ("shortest", "squash"):
        raise ModelError(
            f"{spec.name} resizes images with mode {preprocess['resize_mode']!r}, "
            "which mus_qgis does not support yet."
        )
    tokenizer = open_clip.get_tokenizer(name)
    dtype = getattr(torch, _TORCH_DTYPE[spec.precision])
    logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    return LoadedModel(
        spec, model, tokenizer, torch.device(device), dtype, identity, preprocess, logit_scale
    )


def _register_config_file(name: str) -> str:
    """A model given as an open_clip JSON config file is registered under the file's stem."""
    if name.lower().endswith(".json"):
        import open_clip

        path = Path(name)
        if not path.is_file():
            raise ModelError(f"The model configuration file {path} does not exist.")
        open_clip.add_model_config(path)
        return path.stem
    return name


def _check_name(name: str) -> None:
    if name.startswith(("hf-hub:", "local-dir:")):
        return
    models = known_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"open_clip has no model called {name!r}.{hint}")


def weights_problem(name: str, tag: str, cache_dir=None) -> str:
    """Why the pretrained weights ``tag`` of ``name`` cannot be had here ("" if they can)."""
    require("open_clip")
    try:
        _check_weights_reachable(_register_config_file(name), tag, cache_dir)
    except ModelError as exc:
        return str(exc)
    return ""


def _check_weights_reachable(name: str, tag: str, cache_dir) -> None:
    """Fail at once, with advice, when the weights are neither cached nor downloadable."""
    cfg = _pretrained_cfg(name, tag)
    if _weights_cached(cfg, cache_dir):
        return
    reason = _offline_reason()
    if reason:
        raise ModelError(_offline_advice(name, tag, cfg, cache_dir, reason))


def _pretrained_cfg(name: str, tag: str) -> dict:
    import open_clip

    if not open_clip.pretrained.is_pretrained_cfg(name, tag):
        tags = pretrained_tags(name)
        listed = ", ".join(tags) if tags else "none"
        raise ModelError(
            f"open_clip has no pretrained weights {tag!r} for {name}. Tags for {name}: {listed}."
        )
    return open_clip.pretrained.get_pretrained_cfg(name, tag)


def _hub_files(cfg: dict) -> tuple[str, list[str]]:
    """The Hugging Face repository of a pretrained tag and its weight files, in the order
    open_clip tries them (safetensors first)."""
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    names = (
        [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    )
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    return repo, names


def _offline_advice(name: str, tag: str, cfg: dict, cache_dir, reason: str) -> str:
    """What to do when a tag's weights cannot be downloaded: the file, where it comes from,
    where it goes."""
    repo, names = _hub_files(cfg)
    if repo:
        page = f"https://huggingface.co/{repo}"
        source = (
            f"the file {names[0]} (or {names[-1]}) from {page} (direct link: "
            f"{page}/resolve/main/{names[0]})"
        )
    else:
        source = f"the file {os.path.basename(cfg.get('url', '')) or 'of the weights'} from "
        source += cfg.get("url", "the model's page")
    folder = Path(cache_dir) if cache_dir else Path.home()
    return (
        f"The weights of {name} ({tag}) are not in the cache and cannot be downloaded: "
        f"{reason}. Download {source} on a machine with internet, copy it to this one (for "
        f"example into {folder}), and choose it as the checkpoint file: in Plugins ▸ Multimodal "
        "Urban Studies ▸ Getting started ▸ Use a checkpoint file… (every CLIP dialog then starts "
        "with it), or in the dialog's 'Checkpoint file'. Or empty 'Pretrained weights tag' for a "
        "trial with random weights."
    )


def download_weights(name: str, tag: str, cache_dir, progress=None) -> tuple[str, int, bool]:
    """Fetch a pretrained tag's weights into the model cache, saying how far it has come.

    Returns the file, its size in bytes and whether it was in the cache already. open_clip then
    finds the file where it looks (the same Hugging Face cache layout), so loading the model
    downloads nothing more.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    name = _register_config_file(name)
    _check_name(name)
    cfg = _pretrained_cfg(name, tag)
    repo, names = _hub_files(cfg)
    if not repo:
        raise ModelError(
            f"The weights of {name} ({tag}) come from {cfg.get('url')}, not from Hugging Face: "
            "they download when a classification first uses them."
        )
    cached = _cached_hub_file(repo, names, cache_dir)
    if cached:
        return cached, Path(cached).stat().st_size, True
    folder = str(cache_dir) if cache_dir else None
    reason = _offline_reason()
    if reason:
        raise ModelError(_offline_advice(name, tag, cfg, cache_dir, reason))
    for filename in names:
        try:
            path = hf_hub_download(
                repo,
                filename,
                cache_dir=folder,
                tqdm_class=_relaying_bar(progress, f"{name} ({tag}): {filename}"),
            )
        except RemoteEntryNotFoundError:
            continue  # the repository has the other format
        except OSError as exc:  # the connection went during the download
            raise ModelError(
                f"The download of {repo}/{filename} failed ({exc}); run it again: what came "
                "is kept and the download goes on from there."
            ) from exc
        return path, Path(path).stat().st_size, False
    raise ModelError(f"{repo} on Hugging Face holds none of {', '.join(names)}.")


def _relaying_bar(progress, what: str):
    """A tqdm class that hands a download's progress to ``progress`` (percent, and a line at
    every tenth) instead of drawing a bar on stderr."""
    from tqdm import tqdm

    class RelayingBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = io.StringIO()  # drawn nowhere: the lines go to ``progress``
            super().__init__(*args, **kwargs)
            self.told = -1

        def update(self, n=1):
            shown = super().update(n)
            if progress is not None and self.total:
                share = min(self.n / self.total, 1.0)
                progress.set_progress(100.0 * share)
                tenth = int(share * 10)
                if tenth > self.told:
                    self.told = tenth
                    progress.info(
                        f"Downloading {what}: {self.n / 1e6:.1f} of {self.total / 1e6:.1f} MB"
                    )
                if progress.is_canceled():
                    raise ModelError("The download was canceled; what came is kept for next time.")
            return shown

    return RelayingBar


def _weights_cached(cfg: dict, cache_dir) -> bool:
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    repo, names = _hub_files(cfg)
    if repo:
        return bool(_cached_hub_file(repo, names, cache_dir))
    url = cfg.get("url", "")
    return bool(url and cache_dir and (Path(cache_dir) / os.path.basename(url)).is_file())


def _cached_hub_file(repo: str, names: list[str], cache_dir) -> str:
    """The first of ``names`` that Hugging Face's cache holds for ``repo``, or ""."""
    from huggingface_hub import try_to_load_from_cache

    folder = str(cache_dir) if cache_dir else None
    for name in names:
        cached = try_to_load_from_cache(repo, name, cache_dir=folder)
        if isinstance(cached, str):
            return cached
    return ""


def _offline_reason() -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    port = urlparse(constants.ENDPOINT).port or 443
    try:
        with socket.create_connection((host, port), timeout=3):
            return ""
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or exc})"


_checkpoint_ids: dict[tuple, str] = {}


def _checkpoint_identity(path: str) -> str:
    """A content hash of a checkpoint file, computed once per file version per session."""
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"The checkpoint file {file} does not exist.")
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _checkpoint_ids:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _checkpoint_ids[key] = digest.hexdigest()[:16]
    return _checkpoint_ids[key]
