"""VAE latents of the training photos, cached per (image, flip) when the data module's crops are deterministic."""

from __future__ import annotations

import torch
from torch import Tensor

from hifilight.masking import MaskRule, latent_mask
from hifilight.sampling.ddim import encode_images


class LatentCache:
    """x_0 = E(I) and the mask M at latent size (under `rule`, see hifilight.masking), by the data module's cache
    key ("" = not cacheable)."""

    def __init__(self, rule: MaskRule = "area"):
        self.rule = rule
        self.entries: dict[str, tuple[Tensor, Tensor]] = {}

    def __call__(self, vae, pixels: Tensor, masks: Tensor, keys: list[str]) -> tuple[Tensor, Tensor]:
        todo = [i for i, k in enumerate(keys) if not k or k not in self.entries]
        fresh = {}
        if todo:
            latents = encode_images(vae, pixels[todo]).float()
            small = latent_mask(masks[todo], tuple(latents.shape[-2:]), self.rule)
            fresh = {i: (lat, m) for i, lat, m in zip(todo, latents, small, strict=True)}
            self.entries.update({keys[i]: fresh[i] for i in todo if keys[i]})
        pairs = [fresh[i] if i in fresh else self.entries[k] for i, k in enumerate(keys)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
