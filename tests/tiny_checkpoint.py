"""Write a checkpoint of the tiny test CLIP (random, seeded weights): ``python THIS OUT.pt``.

Run in the engine's Python (it needs torch and open_clip): the engine tests import it, the QGIS
tests run it as a script, since QGIS's process must never import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

TINY_MODEL_CONFIG = Path(__file__).resolve().parent / "assets" / "mus-tiny-vit.json"


def write_tiny_checkpoint(path: Path) -> Path:
    import open_clip
    import torch

    open_clip.add_model_config(TINY_MODEL_CONFIG)
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY_MODEL_CONFIG.stem)
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    write_tiny_checkpoint(Path(sys.argv[1]))
