"""The demo's dream step: the streets dreamed and Rome's mainstream image, offline.

Without $MUS_DREAM_MODEL (a diffusers model id whose weights are cached, or a local model
folder) it uses a tiny diffusion pipeline with RANDOM weights, written here by the engine's
Python: the pipeline runs end to end, and its pictures are noise. Online (a place studied
through an imagery service) it dreams only when $MUS_DREAM_MODEL names a model: the offline
demo already shows the steps. demo.py calls ``dream_steps`` after the ranking and
``print_dreams`` at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

NOISE = (
    "a tiny diffusion pipeline with RANDOM weights (no real model here): its pictures are "
    "NOISE, so the dreams and the mainstream image below say nothing about Rome; set "
    "MUS_DREAM_MODEL to a diffusers model id or folder (e.g. stabilityai/sd-turbo) for real ones"
)


def dream_model(out: Path, engine_python: str) -> tuple[list[str], str]:
    """qgis_process parameters for the diffusion model, and a sentence saying which it is."""
    model = os.environ.get("MUS_DREAM_MODEL", "")
    if model:
        return [f"DREAM_MODEL={model}"], model
    folder = out / "tiny_diffusion"
    if not (folder / "model_index.json").is_file():
        subprocess.run(
            [engine_python, "-m", "mus_qgis.engine.dreams.tiny", str(folder)],
            check=True,
            capture_output=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    # The tiny model's pictures are noise at any size: the smallest is the quickest.
    return [f"DREAM_MODEL={folder}", "SIZE=64"], NOISE


# Each dream costs seconds on a CPU: the demo dreams the first few points only.
DREAMED_POINTS = 12


def dream_steps(
    step, layer, table, clip_parameters, out: Path, engine_python: str, online: bool
) -> dict | None:
    """Dream the first classified streets, then score them by Rome's and Arezzo's mainstream
    image; None when skipped (online without a model named)."""
    if online and not os.environ.get("MUS_DREAM_MODEL"):
        print("5. Dreams: skipped online; set MUS_DREAM_MODEL to a diffusers model to dream.")
        return None
    parameters, said = dream_model(out, engine_python)
    print(
        f"5. Dreams: the first {DREAMED_POINTS} street photos through a diffusion model, then "
        f"CLIP again, and the mainstream image of Rome and Arezzo; {said} ..."
    )
    first = f'{layer("landuse_labels")}|subset="fid" <= {DREAMED_POINTS}'
    results = {"model": said}
    results["dreams"] = step(
        "mus:dreamstreets",
        f"INPUT={first}",
        "PROMPT=a street in Rome",
        "STEPS=2",
        "STRENGTH=0.5",
        f"LABEL_SET={0}",
        *parameters,
        *clip_parameters,
        table("dreams"),
    )
    results["mainstream"] = step(
        "mus:mainstreamimage",
        f"INPUT={first}",
        "CITIES=Rome, Arezzo",
        "IMAGES=2",
        *parameters,
        *clip_parameters,
        table("mainstream_image"),
        f"REPORT={out / 'mainstream_image.html'}",
    )
    return results


def print_dreams(results: dict | None, out: Path) -> None:
    if results is None:
        return
    dreams, mainstream = results["dreams"], results["mainstream"]
    print(
        f"Dreams: {dreams['DREAMED']:.0f} street photos dreamed ({dreams['GENERATED']:.0f} made "
        f"this run, the others from the cache). Diffusion model: {results['model']}."
    )
    gallery = json.loads(mainstream["GALLERY"])
    shown = ", ".join(f"{city} {len(files)}" for city, files in gallery.items())
    print(
        f"Mainstream image: generated images per city: {shown}; every dreamed photo scored by "
        f"its cosine with each city's gallery and prompt; report: {out / 'mainstream_image.html'}"
    )
