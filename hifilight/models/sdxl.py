"""Stable Diffusion XL as hifilight's components: SDXL's two text encoders, pooled text embedding and added time ids
carried in the one conditioning tensor every hifilight path already passes around (`encoder_hidden_states`).

The packed conditioning (B, 1 + 77, D1 + D2):
- rows 1..77: the penultimate hidden states of both CLIP encoders side by side, as diffusers' SDXL pipeline builds
  `prompt_embeds`;
- row 0: the second encoder's pooled, projected embedding (diffusers' `pooled_prompt_embeds`), zero-padded to the
  width.

So the subject embedding c_s (Sec. 3.2) lives in the concatenated output space of both encoders (n rows of D1 + D2),
spliced into the last n token rows and initialised from the null text's tail, exactly as with one encoder. The
pooled embedding has no counterpart in the paper: it stays the prompt's own (the subject rows do not change it),
and the null text phi, which null-text inversion (Eq. 4) and reference guidance (Eq. 10) optimise, includes its
pooled row, so the unconditional branch is optimised as a whole.

The null text: diffusers' SDXL zeroes the negative conditioning of an empty prompt by default
(`force_zeros_for_empty_prompt`). hifilight encodes "" instead, as for SD 1.x: phi_s, c_s's anchor (Eq. 6) and initial
value, must be a real encoding, and the unconditional branch must be the one the optimisations move. With
`force_zeros_for_empty_prompt=False` and `negative_prompt=""` diffusers' pipeline samples exactly what hifilight
samples (tests/models/test_sdxl.py).

`PackedSDXLUNet` unpacks before SDXL's UNet forward and adds the time ids of an uncropped image of the sample's size
(original size = target size = latent size x the VAE factor, crop (0, 0): the pipeline's defaults).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor, nn
from transformers import CLIPTextModel, CLIPTextModelWithProjection
from transformers.modeling_outputs import BaseModelOutput
from transformers.tokenization_utils_base import BatchEncoding


class PackedSDXLUNet(UNet2DConditionModel):
    """SDXL's UNet with its text conditioning packed into `encoder_hidden_states` (see the module docstring)."""

    vae_scale_factor = 8  # image pixels per latent cell, for the added time ids

    @property
    def pooled_dim(self) -> int:
        c = self.config
        return c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim

    def forward(self, sample: Tensor, timestep, encoder_hidden_states: Tensor, *args, **kwargs):
        if kwargs.get("added_cond_kwargs") is None:
            pooled = encoder_hidden_states[:, 0, : self.pooled_dim]
            h, w = (n * self.vae_scale_factor for n in sample.shape[-2:])
            ids = torch.tensor([h, w, 0, 0, h, w], dtype=pooled.dtype, device=sample.device)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": ids.expand(sample.shape[0], 6)}
            encoder_hidden_states = encoder_hidden_states[:, 1:]
        return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)


class DualTokenizer:
    """SDXL's two CLIP tokenizers as one: with `return_tensors="pt"`, `input_ids` holds both encodings side by side
    (B, 2 x 77); without, the first tokenizer's (prompt lengths: both split text into the same words)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    @property
    def parts(self) -> tuple:
        """The two tokenizers (Textual Inversion adds its tokens to each: `hifilight.token_embeddings`)."""
        return self.first, self.second

    @property
    def model_max_length(self) -> int:
        return self.first.model_max_length

    def __len__(self) -> int:
        return len(self.first)

    def __call__(self, texts, **kwargs):
        if kwargs.get("return_tensors") != "pt":
            return self.first(texts, **kwargs)
        ids = [self.first(texts, **kwargs).input_ids, self.second(texts, **kwargs).input_ids]
        return BatchEncoding({"input_ids": torch.cat(ids, dim=1)})


class DualTextEncoder(nn.Module):
    """SDXL's text encoders as one module whose `last_hidden_state` is the packed conditioning (module docstring)."""

    def __init__(self, first: CLIPTextModel, second: CLIPTextModelWithProjection):
        super().__init__()
        self.first, self.second = first, second
        self.config = SimpleNamespace(hidden_size=first.config.hidden_size + second.config.hidden_size)

    @property
    def parts(self) -> tuple:
        """The two encoders, each with its own token table (`hifilight.token_embeddings`)."""
        return self.first, self.second

    @property
    def device(self) -> torch.device:
        return self.first.device

    @property
    def dtype(self) -> torch.dtype:
        return self.first.dtype

    def forward(self, input_ids: Tensor) -> BaseModelOutput:
        ids1, ids2 = input_ids.chunk(2, dim=1)
        out1 = self.first(ids1, output_hidden_states=True)
        out2 = self.second(ids2, output_hidden_states=True)
        tokens = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
        pooled = F.pad(out2.text_embeds, (0, tokens.shape[-1] - out2.text_embeds.shape[-1]))
        return BaseModelOutput(last_hidden_state=torch.cat([pooled[:, None].to(tokens.dtype), tokens], dim=1))


def is_sdxl(comps) -> bool:
    """Whether these components (or a training module holding them) are SDXL's."""
    return isinstance(comps.text_encoder, DualTextEncoder)


def architecture(comps) -> str:
    """What a subject artifact records as its base model's architecture: "sdxl" or "sd" (SD 1.x / 2.x)."""
    return "sdxl" if is_sdxl(comps) else "sd"


def sdxl_pipeline(comps):
    """diffusers' `StableDiffusionXLPipeline` over the same modules, with hifilight's null text (the encoding of "",
    not zeros): it samples what hifilight samples, and its `save_pretrained` writes a folder diffusers loads."""
    from diffusers import StableDiffusionXLPipeline

    te, tok = comps.text_encoder, comps.tokenizer
    return StableDiffusionXLPipeline(
        comps.vae,
        te.first,
        te.second,
        tok.first,
        tok.second,
        comps.unet,
        comps.scheduler,
        force_zeros_for_empty_prompt=False,
    )


def save_pipeline(pipe, folder: Path) -> None:
    """`pipe.save_pretrained` (safetensors); an SDXL UNet is recorded as diffusers' `UNet2DConditionModel`
    (PackedSDXLUNet is that class with an unpacking forward and the same weights), so plain diffusers loads it."""
    pipe.save_pretrained(folder, safe_serialization=True)
    if not isinstance(pipe.unet, PackedSDXLUNet):
        return
    for path, key in ((folder / "unet" / "config.json", "_class_name"), (folder / "model_index.json", "unet")):
        data = json.loads(path.read_text())
        data[key] = "UNet2DConditionModel" if key == "_class_name" else ["diffusers", "UNet2DConditionModel"]
        path.write_text(json.dumps(data, indent=2))


def load_sdxl_parts(source: str, kwargs: dict) -> dict:
    """An SDXL pipeline folder or hub id as hifilight's parts (text encoders and tokenizers joined)."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTokenizer

    first = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs)
    second = CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2", **kwargs)
    tokenizers = [CLIPTokenizer.from_pretrained(source, subfolder=f, **kwargs) for f in ("tokenizer", "tokenizer_2")]
    return {
        "unet": PackedSDXLUNet.from_pretrained(source, subfolder="unet", **kwargs),
        "vae": AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs),
        "text_encoder": DualTextEncoder(first, second),
        "tokenizer": DualTokenizer(*tokenizers),
        "scheduler": DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs),
    }
