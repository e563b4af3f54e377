"""A tiny Stable Diffusion pipeline with random (seeded) weights, for tests, the demo and the
benchmark: ``python -m mus_qgis.engine.dreams.tiny OUT_FOLDER``.

UNet, VAE, CLIP text encoder with a tokenizer of a few letters, and a scheduler, from small
configs; saved with ``save_pretrained`` so that it is loaded the way a downloaded model folder
is. It runs in a fraction of a second a dream at 64 pixels, and its pictures are NOISE: nothing
it makes means anything.
"""

from __future__ import annotations

import json
import string
import sys
import tempfile
from pathlib import Path


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for character in string.ascii_lowercase + string.digits:
        vocab.setdefault(character, len(vocab))
        vocab.setdefault(f"{character}</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


def write_tiny_pipeline(folder: Path) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(1234)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=128,
            max_position_embeddings=77,
        )
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = tiny_tokenizer(Path(scratch))
        # No safety checker: the tiny pipeline has none to load (a real model may; README).
        pipeline = StableDiffusionImg2ImgPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    write_tiny_pipeline(Path(sys.argv[1]))
