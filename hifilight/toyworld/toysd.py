"""ToySD: a small text-to-image latent diffusion model with Stable Diffusion's architecture (diffusers AutoencoderKL
+ UNet2DConditionModel, transformers CLIPTextModel + CLIPTokenizer, DDPM/DDIM noise schedule of SD v1), trained
here from scratch on ToyWorld renders and saved in the diffusers folder layout, so it loads through
`--model.pretrained hifilight/assets/toyworld/toysd` like any Stable Diffusion checkpoint.

Sizes: 64x64 images, a 4x-downsampling VAE (16x16x16 latents), a word-level tokenizer over ToyWorld's words (any
other word falls back to characters), 32-token contexts (room for HiFi Tuner's n=5 subject rows after every
caption). The subjects (`dataset.SUBJECTS`) are never shown in training: they are new objects for it.

The model's parts are built here; its tokenizer, corpus and training live beside it (`tokenizer`, `corpus`,
`vae_training`, `toysd_training`: `hifilight toyworld train toysd`, or `make toyworld-train`, retrains it from a seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from hifilight.io import write_folder_atomic
from hifilight.models.tiny import build_components
from hifilight.toyworld.tokenizer import MAX_LENGTH, toy_tokenizer

TOYSD = Path(__file__).resolve().parents[1] / "assets" / "toyworld" / "toysd"
SIZE = 64
TEXT_HIDDEN = 64
LATENT = 16  # latent channels: SD's 4 at 4x downsampling (48x compression) blurs dots and stripes in a small VAE


def toy_text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=4 * TEXT_HIDDEN,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )


def toy_vae() -> AutoencoderKL:
    # 4 norm groups: with one channel per group (16 groups on 16 channels) GroupNorm removes every channel's image
    # mean, and with it the colours the decoder must give back.
    vae = AutoencoderKL(
        block_out_channels=(16, 32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4,
        sample_size=SIZE,
    )
    # The posterior's log-variance starts at -10 (std 0.007) instead of 0: a short training otherwise spends most of
    # its steps shrinking a unit noise on the latents, and decodes blurred images (the KL term keeps it learnable).
    with torch.no_grad():
        vae.quant_conv.weight[LATENT:] = 0
        vae.quant_conv.bias[LATENT:] = -10.0
    return vae


def toy_unet(widths: tuple[int, int, int] = (48, 96, 128), cross_attention_dim: int = TEXT_HIDDEN):
    """ToySD's UNet (v1's widths by default; v2's: `toysd2.toy_unet`) on the 16x16 latent. Cross-attention at 8x8
    and 4x4 only (SD also has it at full latent size): 1.6x faster to train on a CPU."""
    return UNet2DConditionModel(
        sample_size=SIZE // 4,
        in_channels=LATENT,
        out_channels=LATENT,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=16,
        norm_num_groups=16,
    )


def grow_attention(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """`unet` with cross-attention added at the full latent size (the blocks `toy_unet` leaves without it), as SD
    has it: a capacity lever that continues from trained weights. Every trained weight is kept and each new
    transformer's output projection starts at zero, so the grown UNet computes exactly what `unet` does (the
    transformer's residual passes its input through) until training moves the new layers. A UNet with
    cross-attention in every block is returned as it is."""
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}  # "_use_default_values" would win
    plain = {"DownBlock2D": "CrossAttnDownBlock2D", "UpBlock2D": "CrossAttnUpBlock2D"}
    new = [f"down_blocks.{i}.attentions." for i, b in enumerate(config["down_block_types"]) if b in plain]
    new += [f"up_blocks.{i}.attentions." for i, b in enumerate(config["up_block_types"]) if b in plain]
    if not new:
        return unet
    blocks = {k: [plain.get(b, b) for b in config[k]] for k in ("down_block_types", "up_block_types")}
    # the new blocks attend to the text only (no self-attention over the 16x16 tokens: 2.4x the step time on a CPU);
    # their attn1 is then a second text attention, which hifilight.sampling.attention (attn2 layers) does not record
    only = config["only_cross_attention"]
    only = list(only) if isinstance(only, list | tuple) else [only] * len(blocks["down_block_types"])
    only = [o or b in plain for o, b in zip(only, config["down_block_types"], strict=True)]
    grown = UNet2DConditionModel.from_config({**config, **blocks, "only_cross_attention": only})
    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or not all(k.startswith(tuple(new)) for k in missing):
        raise RuntimeError(f"grow_attention: weights that do not carry over: {unexpected or missing}")
    with torch.no_grad():
        for name, module in grown.named_modules():
            if name.startswith(tuple(new)) and name.endswith("proj_out"):
                module.weight.zero_()
                module.bias.zero_()
    return grown


def build(seed: int = 0) -> dict:
    return build_components(seed, toy_tokenizer(), toy_unet, toy_vae, toy_text_encoder)


def save(comps: dict, out: Path, info: dict) -> Path:
    """Write the diffusers pipeline folder layout (model_index.json + one subfolder per component), atomically."""

    def write(tmp: Path) -> None:
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            comps[name].save_pretrained(tmp / name)
        index = {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n")

    write_folder_atomic(out, write, overwrite=True)
    return out
