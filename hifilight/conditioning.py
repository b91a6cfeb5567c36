"""Text conditioning with a subject embedding (HiFi Tuner Sec. 3.2).

`c` is the text encoder output for a caption and `phi` the output for the empty string (null text). The subject
embedding `c_s` (n x d, in the encoder's *output* space) replaces the last n rows of `c`, written [c, c_s], and is
initialised with phi_s = phi[-n:]. The paper argues [c, phi_s] = c because those rows are padding; with CLIP's
causal attention the padding rows of `c` still see the caption, so this holds only approximately. The caption must
end before the last n rows (`check_room`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hifilight.errors import HifiError, shown


def tokenize(tokenizer, texts: list[str]) -> Tensor:
    return tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_text(tokenizer, text_encoder, texts: list[str]) -> Tensor:
    """CLIP text encoder last hidden states, (B, 77, D); the text encoder is never in the backward graph."""
    ids = tokenize(tokenizer, texts).to(text_encoder.device)
    return text_encoder(ids).last_hidden_state


def check_room(tokenizer, text: str, num_tokens: int) -> None:
    """The caption (with BOS/EOS) must end before the last `num_tokens` rows, which c_s overwrites."""
    used = len(tokenizer(text).input_ids)
    room = tokenizer.model_max_length - num_tokens
    if used > room:
        raise HifiError(
            f"caption {shown(text)} uses {used} tokens but only {room} fit before the {num_tokens} subject tokens; "
            "shorten the prompt or lower --model.num_tokens"
        )


def splice_subject(c: Tensor, c_s: Tensor) -> Tensor:
    """[c, c_s]: replace the last n rows of `c` (B, L, D) with `c_s` (n, D) or (B, n, D); gradients reach c_s."""
    n = c_s.shape[-2]
    c_s = c_s.to(c.dtype)
    if c_s.dim() == 2:
        c_s = c_s.unsqueeze(0)
    return torch.cat([c[:, :-n], c_s.expand(c.shape[0], n, c.shape[-1])], dim=1)


def null_tail(phi: Tensor, num_tokens: int) -> Tensor:
    """phi_s: the last n rows of the null-text embedding (Eq. 6's anchor and c_s's initial value)."""
    if not 1 <= num_tokens < phi.shape[-2]:
        raise HifiError(f"--model.num_tokens must be between 1 and {phi.shape[-2] - 1}, got {num_tokens}")
    return phi.reshape(-1, *phi.shape[-2:])[0, -num_tokens:].clone()
