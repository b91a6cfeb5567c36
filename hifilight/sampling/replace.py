"""Personalized subject replacement (Algorithm 3): prompt-to-prompt cross-attention injection.

The source branch replays the photo's null-text inversion with its caption c^r; the target branch starts from the
same x_T* with c^g (the caption with the source word replaced by the class word w_g, and the subject embeddings
c_s^t in the last n rows). Both run in one batch, so no attention map is stored: at every injected step and
layer, the target's conditional cross-attention columns take the source's maps a_t^{r*}, except the columns of
[c_s^t, w_g], which keep the target's own maps (F~ in the paper).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from hifilight.conditioning import splice_subject
from hifilight.errors import HifiError
from hifilight.sampling.attention import AttentionController
from hifilight.sampling.engine import SamplingEngine, StepCallback, StepOverride, StepState
from hifilight.sampling.stepwise import nearest_index

OWN = -1  # a target column that keeps its own attention map


def replace_word(caption: str, source_word: str, target_word: str) -> str:
    pattern = re.compile(rf"\b{re.escape(source_word)}\b", flags=re.IGNORECASE)
    if not pattern.search(caption):
        words = ", ".join(dict.fromkeys(re.findall(r"[\w'-]+", caption)))
        raise HifiError(
            f"--source_word {source_word!r} does not occur in the caption {caption!r}; pick one of: {words}"
        )
    return pattern.sub(target_word, caption, count=1)


def column_map(tokenizer, caption: str, source_word: str, target_word: str, num_tokens: int) -> Tensor:
    """For each target key column, the source column whose map it takes, or OWN (w_g's tokens and c_s's rows).

    Tokens before the replaced word line up; tokens after it are shifted by the difference in token counts.
    """
    length = tokenizer.model_max_length
    match = re.search(rf"\b{re.escape(source_word)}\b", caption, flags=re.IGNORECASE)
    prefix = caption[: match.start()].rstrip()
    n_prefix = len(tokenizer(prefix).input_ids) - 1  # BOS + prefix tokens (without EOS)
    n_src = len(tokenizer(source_word).input_ids) - 2
    n_tgt = len(tokenizer(target_word).input_ids) - 2
    mapping = torch.arange(length)
    shift = n_src - n_tgt
    mapping[n_prefix + n_tgt :] = (torch.arange(n_prefix + n_tgt, length) + shift).clamp(max=length - 1)
    mapping[n_prefix : n_prefix + n_tgt] = OWN
    mapping[length - num_tokens :] = OWN
    return mapping


class InjectCrossAttention(AttentionController):
    """Target conditional maps <- source conditional maps (mapped by column), on the chosen steps.

    The UNet batch is [source, target] (x2 for classifier-free guidance: [uncond_s, uncond_t, cond_s, cond_t]).
    """

    def __init__(self, mapping: Tensor, steps: set[int] | None = None, layers: str | None = None):
        super().__init__()
        self.mapping, self.steps = mapping, steps
        self.layers = re.compile(layers) if layers else None  # module-path regex; None = every cross-attention layer

    def __call__(self, name: str, probs: Tensor, heads: int) -> Tensor:
        if self.steps is not None and self.step not in self.steps:
            return probs
        if self.layers is not None and not self.layers.search(name):
            return probs
        maps = probs.view(-1, heads, *probs.shape[1:])
        src, tgt = (2, 3) if self.cfg else (0, 1)
        inject = self.mapping >= 0
        source = maps[src][..., self.mapping.clamp(min=0)]
        maps = maps.clone()
        maps[tgt] = torch.where(inject.to(maps.device), source, maps[tgt])
        return maps.view_as(probs)


class ReplacementConditioning(StepCallback):
    """cond = [c^r, [c^g, c_s^t]] at each step (c_s^t nearest to the step's timestep, or c_s for every step)."""

    def __init__(self, c_r: Tensor, c_g: Tensor, c_s: Tensor, c_s_t: Tensor | None, timesteps: Tensor | None):
        self.c_r, self.c_g, self.c_s = c_r, c_g, c_s
        self.c_s_t, self.timesteps = c_s_t, timesteps

    def on_step_begin(self, state: StepState, engine: SamplingEngine) -> StepOverride:
        embedding = self.c_s
        if self.c_s_t is not None:
            embedding = self.c_s_t[nearest_index(self.timesteps, state.timestep)]
        return StepOverride(cond=torch.cat([self.c_r, splice_subject(self.c_g, embedding.to(self.c_g.device))]))
