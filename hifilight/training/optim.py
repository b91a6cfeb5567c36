"""The optimiser of the fits that train many weights (DreamBooth, LoRA, ToySD's UNet)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """torch's AdamW, with its fused kernel where every parameter allows it (CPU or CUDA, a float dtype): the same
    update up to rounding, and on the CPU 2.8x faster than the per-tensor loop torch picks there by default (ToySD
    v2's UNet: 16 ms against 44 ms a step on one thread), which was 11% of a ToyWorld DreamBooth step."""
    params = list(params)
    fused = bool(params) and all(p.device.type in FUSED_DEVICES and p.dtype in FUSED_DTYPES for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
