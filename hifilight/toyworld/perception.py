"""ToyWorld's models behind hifilight's interfaces: ToyDINO as an image encoder (`--reference.dino_model toyworld`,
`--metrics.dino_model toyworld`) and ToySAM as a mask provider (`--data.masks toyworld`,
`--reference.generated_masks toyworld`). They only know ToyWorld images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from hifilight.toyworld.models import ATTRIBUTES, SIZE, load, to_input

NAME = "toyworld"


def _inputs(images: list[Image.Image]) -> Tensor:
    return to_input(np.stack([np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for img in images]))


class ToyDinoEncoder:
    """ToyDINO: L2-normalised features of the ToyWorld classifier."""

    name = NAME

    def __init__(self, weights: str = "classifier"):
        self.model = load(weights)

    def encode_images(self, images: list[Image.Image]) -> Tensor:
        return self.model.embed(_inputs(list(images)))

    @torch.no_grad()
    def attributes(self, images: list[Image.Image]) -> list[dict[str, str]]:
        """The classifier's reading of each image: shape, colour, pattern, pattern colour, background."""
        out = self.model(_inputs(list(images)))
        return [{k: ATTRIBUTES[k][int(out[k][i].argmax())] for k in ATTRIBUTES} for i in range(len(images))]


class ToySamMaskProvider:
    """ToySAM: the object's mask (box-free), at the image's size."""

    name = NAME

    def __init__(self):
        self.model = load("segmenter")

    @torch.no_grad()
    def __call__(self, image_path: Path, image: Image.Image) -> Tensor:
        logits = self.model(_inputs([image]))
        mask = F.interpolate(logits, size=(image.height, image.width), mode="bilinear") > 0
        return mask[0].float()
