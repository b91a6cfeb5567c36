"""Subject masks at latent size: the rule that turns a pixel mask into the latent M of Eq. (5) and Eq. (9)-(10).

A latent cell covers f x f pixels (f = 8 for Stable Diffusion, where a 512 px photo gives 64 x 64 cells; 4 for
ToySD). The paper multiplies the loss by a binary M and leaves open how the image-size mask becomes one; the choice
matters most at the subject's boundary, where the cells that carry its outline are partly subject:

- "area": keep a cell when at least half of it is subject (the earlier default). Boundary cells below half are
  dropped, so thin parts and the outline lose their loss: on ToyWorld's 64 px subjects it kept 60-75% of the cells
  the subject touches (stars lose their points).
- "touched": keep every cell the subject touches. Nothing of the subject is lost; up to one cell of background
  around it is trained as subject.
- "soft": weight each cell by its subject share (0..1); with the "mask" loss normalisation this is the
  area-weighted mean of the per-cell loss.

Every rule keeps at least the touched cells of a subject too thin to survive its threshold, so M is never empty
when the pixel mask is not.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

MaskRule = Literal["area", "touched", "soft"]
MASK_RULES: tuple[str, ...] = ("area", "touched", "soft")
BINARY_RULES: tuple[str, ...] = ("area", "touched")


def subject_share(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """The share of each latent cell that is subject: (B, 1, H, W) mask -> (B, 1, *size) in [0, 1]."""
    return F.interpolate(mask.float(), size=size, mode="area")


def latent_mask(mask: Tensor, size: tuple[int, int], rule: MaskRule = "area") -> Tensor:
    """A (B, 1, H, W) {0, 1} pixel mask at latent size under `rule` (see the module docstring)."""
    if rule not in MASK_RULES:
        raise ValueError(f"mask rule must be one of {', '.join(MASK_RULES)}, got {rule!r}")
    share = subject_share(mask, size)
    touched = (share > 0).float()
    if rule == "touched":
        return touched
    kept = share if rule == "soft" else (share >= 0.5).float()
    empty = kept.flatten(1).sum(1) == 0
    if empty.any():
        kept[empty] = touched[empty]
    return kept
