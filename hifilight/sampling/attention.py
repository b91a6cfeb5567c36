"""Cross-attention control through diffusers attention processors (no monkeypatching).

`attention_control(unet, controller)` installs a `ControlledAttnProcessor` on every cross-attention layer
(module paths ending in `attn2.processor`) and restores the previous processors on exit. Each processor hands the
attention probabilities softmax(QK^T / sqrt(d)) of its layer to the controller, which may record them (the maps of
Figure 3) or return replacements (prompt-to-prompt injection). The engine tells the controller the step through
the `AttentionStep` callback; the controller never counts calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor
from torch import Tensor

from hifilight.sampling.engine import SamplingEngine, StepCallback, StepState

CROSS_ATTENTION_SUFFIX = "attn2.processor"


class AttentionController:
    """Base controller: sees (layer name, probs of shape (batch*heads, queries, keys)) and returns the probs."""

    def __init__(self):
        self.step: int | None = None  # index of the current sampling step, set by AttentionStep
        self.cfg = True  # whether the UNet batch is [unconditional, conditional] (guidance != 1)

    def __call__(self, name: str, probs: Tensor, heads: int) -> Tensor:
        return probs


class ControlledAttnProcessor(AttnProcessor):
    """diffusers' `AttnProcessor` computation with the attention probabilities passed through a controller."""

    def __init__(self, controller: AttentionController, name: str):
        super().__init__()
        self.controller, self.name = controller, name

    def __call__(
        self,
        attn: Attention,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        *args,
        **kwargs,
    ):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states if encoder_hidden_states is None else encoder_hidden_states
        ).shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            context = hidden_states
        elif attn.norm_cross:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states)
        else:
            context = encoder_hidden_states
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs = self.controller(self.name, probs, attn.heads)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def attention_control(unet, controller: AttentionController) -> Iterator[AttentionController]:
    """Install controlled processors on the cross-attention layers of `unet`; restore the originals on exit."""
    original = dict(unet.attn_processors)
    controlled = {
        name: ControlledAttnProcessor(controller, name) if name.endswith(CROSS_ATTENTION_SUFFIX) else proc
        for name, proc in original.items()
    }
    unet.set_attn_processor(controlled)
    try:
        yield controller
    finally:
        unet.set_attn_processor(dict(original))  # set_attn_processor consumes the dict it is given


class AttentionStep(StepCallback):
    """Tells a controller which step the engine is on (and whether the batch carries CFG's unconditional half)."""

    def __init__(self, controller: AttentionController):
        self.controller = controller

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> None:
        self.controller.step = state.index
        self.controller.cfg = state.guidance_scale != 1.0
        return None


def conditional_maps(probs: Tensor, heads: int, cfg: bool) -> Tensor:
    """(batch*heads, Q, K) -> head-averaged maps of the conditional branch, (images, Q, K)."""
    maps = probs.reshape(-1, heads, *probs.shape[1:]).mean(1)
    return maps[maps.shape[0] // 2 :] if cfg else maps


def cross_attention_sizes(unet_config, latent_size: int) -> list[int]:
    """The side of every cross-attention map a UNet2DConditionModel makes for a latent_size x latent_size input:
    down block i works at latent / 2^i, the mid block at the smallest size, up block j at latent / 2^(n-1-j)."""
    n = len(unet_config.down_block_types)
    sizes = {latent_size >> i for i, t in enumerate(unet_config.down_block_types) if "CrossAttn" in t}
    sizes |= {
        latent_size >> j
        for j, t in zip(range(n - 1, -1, -1), unet_config.up_block_types, strict=True)
        if "CrossAttn" in t
    }
    if "CrossAttn" in (unet_config.mid_block_type or ""):
        sizes.add(latent_size >> (n - 1))
    return sorted(sizes)


class AttentionStore(AttentionController):
    """Averages the cross-attention maps of chosen key positions at chosen steps (Figure 3).

    For each recorded step: the maps of every cross-attention layer whose map is `res` x `res` (all layers,
    resized to the largest map, when `res` is None), averaged over heads and layers; shape (images, keys, r, r).
    """

    def __init__(self, steps: set[int], positions: list[int], res: int | None = None):
        super().__init__()
        self.steps, self.positions, self.res = set(steps), list(positions), res
        self._sums: dict[int, list[Tensor]] = {}
        self.sizes: set[int] = set()

    def __call__(self, name: str, probs: Tensor, heads: int) -> Tensor:
        side = int(round(probs.shape[1] ** 0.5))
        self.sizes.add(side)
        if self.step in self.steps and (self.res is None or side == self.res):
            maps = conditional_maps(probs, heads, self.cfg)[..., self.positions]  # (images, Q, n)
            maps = maps.transpose(1, 2).reshape(maps.shape[0], len(self.positions), side, side)
            self._sums.setdefault(self.step, []).append(maps.detach().float().cpu())
        return probs

    def maps(self) -> dict[int, Tensor]:
        if not self._sums:
            raise ValueError(f"no attention map of size {self.res} was recorded; layer sizes are {sorted(self.sizes)}")
        out = {}
        for step, layers in self._sums.items():
            side = self.res or max(m.shape[-1] for m in layers)
            resized = [
                F.interpolate(m, size=(side, side), mode="bilinear") if m.shape[-1] != side else m for m in layers
            ]
            out[step] = torch.stack(resized).mean(0)
        return out
