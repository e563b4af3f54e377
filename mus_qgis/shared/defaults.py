"""The defaults both sides must agree on: a dialog offers them, the engine falls back on them."""

from __future__ import annotations

DEFAULT_MODEL = "ViT-B-32"  # open_clip's name
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"  # its weights' tag
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_DREAM_MODEL = "stabilityai/sd-turbo"  # diffusers' model id
GRID_SHAPES = ("square", "hexagon")
