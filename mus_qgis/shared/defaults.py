"""The defaults both sides must agree on: a dialog offers them, the engine falls back on them."""

from __future__ import annotations

DEFAULT_MODEL = "ViT-B-32"  # open_clip's name
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"  # its weights' tag
DEVICES = ("auto", "cpu", "cuda", "mps")
# The model's number format: fp32 is exact; bf16 is much faster on CPUs with AMX (Intel Xeon
# since the 4th generation) and on recent GPUs; fp16 runs on GPUs and Apple's MPS only.
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = "fp32"
DEFAULT_DREAM_MODEL = "stabilityai/sd-turbo"  # diffusers' model id
GRID_SHAPES = ("square", "hexagon")
