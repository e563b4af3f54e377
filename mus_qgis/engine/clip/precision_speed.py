"""Is bf16 faster than fp32 on this computer? Measured once per computer and engine (the CPU,
torch's version, the device) and remembered in the cache folder, so that Engine status can say
it at no cost the next time: CPUs with AMX run bf16 several times faster, others far slower."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from ...shared.defaults import DEFAULT_MODEL
from .models import ModelSpec, load_model, resolve_device

MEASURE_IMAGES = 4  # one small batch: seconds, even where bf16 is slow
RECORD_NAME = "precision_speed.json"


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what Python's platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_amx() -> bool | None:
    """Whether the CPU has AMX for bfloat16 (Linux says so in /proc/cpuinfo; None elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    return "amx_bf16" in flags


def machine_key() -> str:
    import torch

    device = resolve_device("auto")
    return f"{cpu_name()} | torch {torch.__version__} | {device}"


def precision_speed(
    cache_dir: str | Path | None, measure: bool = True, model: str = DEFAULT_MODEL
) -> dict:
    """{"key", "bf16_speedup", "smallest_cosine", "amx", "images"} for this computer: read from
    the cache folder when this computer was measured before, else measured now (when
    ``measure``; otherwise {} )."""
    record_path = Path(cache_dir) / RECORD_NAME if cache_dir else None
    key = machine_key()
    if record_path is not None and record_path.is_file():
        try:
            known = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        if known.get("key") == key:
            return known
    if not measure:
        return {}
    record = {"key": key, **_measure(model), "amx": cpu_has_amx()}
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def _measure(name: str) -> dict:
    """The model's image tower with random weights (no download) on one batch of noise images,
    in fp32 and in bf16: the better of two timed passes each, after one to warm up."""
    import torch

    device = resolve_device("auto")
    generator = torch.Generator().manual_seed(0)
    seconds, embeddings, pixels = {}, {}, None
    for precision in ("fp32", "bf16"):
        model = load_model(ModelSpec(name, "", "", device, precision))
        if pixels is None:  # the same images for both
            size = (MEASURE_IMAGES, 3, model.image_size, model.image_size)
            pixels = torch.randint(0, 256, size, generator=generator).to(torch.uint8)
        model.encode_images(pixels)  # warm-up: the first pass allocates and plans
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            embeddings[precision] = model.encode_images(pixels)
            best = min(best, time.perf_counter() - start)
        seconds[precision] = best
    cosine = (embeddings["fp32"] * embeddings["bf16"]).sum(dim=1).min().item()
    return {
        "bf16_speedup": seconds["fp32"] / seconds["bf16"],
        "smallest_cosine": cosine,
        "images": MEASURE_IMAGES,
        "model": Path(name).stem if name.endswith(".json") else name,
    }


def precision_advice(record: dict) -> str:
    """The measurement as a sentence for Engine status."""
    if not record:
        return "bf16 against fp32: not measured."
    speedup = record["bf16_speedup"]
    amx = {True: "this CPU has AMX", False: "this CPU has no AMX", None: ""}[record.get("amx")]
    where = f" ({amx})" if amx else ""
    if speedup >= 1.2:
        advice = (
            f"bf16 runs {speedup:.1f}× as fast as fp32 here{where}: choose Precision bf16 for "
            "large studies, after checking its scores on your photos and weights "
            "(scripts/precision_fidelity.py)"
        )
    else:
        advice = (
            f"bf16 runs at {speedup:.2f}× the speed of fp32 here{where}: keep fp32, the exact one"
        )
    return (
        f"{advice}. Embeddings of the two agree to a cosine of at least "
        f"{record['smallest_cosine']:.5f} ({record.get('model', DEFAULT_MODEL)}, random weights, "
        f"{record['images']} images of noise)."
    )
