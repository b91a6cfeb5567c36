"""Image (and text) encoders behind one small interface: DINO ViT and CLIP, loaded by hub id or local folder.

Used by reference selection (Algorithm 2 picks the source image closest to a generation in DINO space) and by the
DINO / CLIP-I / CLIP-T metrics. Every encoder returns L2-normalised embeddings, one row per input, computed in
batches, with the preprocessing its model expects (`Preprocess`, a documented parameter since public evaluation
code differs here; see docs/evaluate.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from transformers import CLIPModel, CLIPTokenizer, ViTModel

from hifilight import plugins
from hifilight.models.loading import load_failure, resolve_source
from hifilight.models.tiny import tiny_clip, tiny_vit

TINY = "tiny"  # random-weight preset: proves code paths, its similarities mean nothing

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
DINO_DEFAULT, CLIP_DEFAULT = "facebook/dino-vits16", "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize` (bicubic), centre-crop `crop` x `crop`, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, images: list[Image.Image]) -> Tensor:
        return torch.stack([self.one(img) for img in images])

    def one(self, image: Image.Image) -> Tensor:
        image = image.convert("RGB")
        w, h = image.size
        scale = self.resize / min(w, h)
        # rounding as transformers' image processors do for "shortest_edge"
        size = (self.resize, int(self.resize * h / w)) if w <= h else (int(self.resize * w / h), self.resize)
        if scale != 1:
            image = image.resize(size, Image.BICUBIC)
        left, top = (image.width - self.crop) // 2, (image.height - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean, std = torch.tensor(self.mean).view(3, 1, 1), torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std


def dino_preprocess(image_size: int = 224) -> Preprocess:
    """DreamBench DINO protocol: Resize(256, bicubic) -> CenterCrop(224) -> ImageNet normalisation."""
    return Preprocess(round(image_size * 256 / 224), image_size, IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess(image_size: int = 224) -> Preprocess:
    """CLIP's own: shorter side to 224 (bicubic), centre crop 224, CLIP normalisation."""
    return Preprocess(image_size, image_size, CLIP_MEAN, CLIP_STD)


def folder_preprocess(folder: Path) -> Preprocess | None:
    """The preprocessing a local CLIP folder's `preprocessor_config.json` states (size, crop, mean, std), as
    transformers' CLIPImageProcessor applies it; None without one (CLIP's own is then used). A CLIP trained with
    other statistics (ToyWorld's ToyCLIP: 64 px, mean and std 0.5) is then fed what it was trained on."""
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return None
    c = json.loads(config.read_text())
    size = c.get("size", {})
    resize = size.get("shortest_edge") if isinstance(size, dict) else size
    crop = c.get("crop_size", {})
    crop = crop.get("height") if isinstance(crop, dict) else crop
    return Preprocess(int(resize), int(crop or resize), tuple(c["image_mean"]), tuple(c["image_std"]))


class ImageEncoder(Protocol):
    name: str

    def encode_images(self, images: list[Image.Image]) -> Tensor:
        """(N, D) L2-normalised embeddings."""
        ...


def _batched(fn, items: list, batch_size: int) -> Tensor:
    if not items:
        raise ValueError("no inputs to encode")
    return torch.cat([fn(items[i : i + batch_size]) for i in range(0, len(items), batch_size)])


def _features(out) -> Tensor:
    """transformers 5 may return an output object where 4.x returned a tensor."""
    return out if isinstance(out, Tensor) else out.pooler_output


class DinoEncoder:
    """DINO ViT image embeddings: the [CLS] token of the last layer (after the final layer norm)."""

    def __init__(
        self, model: ViTModel, preprocess: Preprocess | None = None, batch_size: int = 16, name: str = DINO_DEFAULT
    ):
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess or dino_preprocess(model.config.image_size)
        self.batch_size, self.name = batch_size, name

    @classmethod
    def from_pretrained(
        cls, source: str = DINO_DEFAULT, device: str = "cpu", flag: str = "--metrics.dino_model", **kwargs
    ) -> DinoEncoder:
        """A hub id, a local folder, "tiny" (random weights, for tests and dry runs) or a registered name
        ("toyworld": ToyDINO); `flag` is the option that named it, for messages."""
        if source == TINY:
            return cls(tiny_vit().to(device), name=source, **kwargs)
        registered = plugins.image_encoder(source)  # e.g. "toyworld" (ToyDINO)
        if registered is not None:
            return registered(device)
        path, local = resolve_source(source, flag)
        try:
            model = ViTModel.from_pretrained(path, add_pooling_layer=False, local_files_only=local)
        except OSError as err:
            raise load_failure(flag, source, err) from err
        return cls(model.to(device), name=source, **kwargs)

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> Tensor:
        def run(chunk):
            pixels = self.preprocess(chunk).to(self.model.device, self.model.dtype)
            return self.model(pixel_values=pixels).last_hidden_state[:, 0].float()

        return F.normalize(_batched(run, list(images), self.batch_size), dim=-1).cpu()


class ClipEncoder:
    """CLIP image and text embeddings (projected), for CLIP-I and CLIP-T."""

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: CLIPTokenizer,
        preprocess: Preprocess | None = None,
        batch_size: int = 16,
        name: str = CLIP_DEFAULT,
    ):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocess = preprocess or clip_preprocess(model.config.vision_config.image_size)
        self.batch_size, self.name = batch_size, name

    @classmethod
    def from_pretrained(
        cls, source: str = CLIP_DEFAULT, device: str = "cpu", flag: str = "--metrics.clip_model", **kwargs
    ) -> ClipEncoder:
        """A hub id, a local folder, or "tiny" (random weights, for tests and dry runs); `flag` names the option."""
        if source == TINY:
            model, tokenizer = tiny_clip()
            return cls(model.to(device), tokenizer, name=source, **kwargs)
        path, local = resolve_source(source, flag)
        try:
            model = CLIPModel.from_pretrained(path, local_files_only=local)
            tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=local)
        except OSError as err:
            raise load_failure(flag, source, err) from err
        kwargs.setdefault("preprocess", folder_preprocess(Path(path)) if local else None)
        return cls(model.to(device), tokenizer, name=source, **kwargs)

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> Tensor:
        def run(chunk):
            pixels = self.preprocess(chunk).to(self.model.device, self.model.dtype)
            return _features(self.model.get_image_features(pixel_values=pixels)).float()

        return F.normalize(_batched(run, list(images), self.batch_size), dim=-1).cpu()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> Tensor:
        def run(chunk):
            tokens = self.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(self.model.device)
            return _features(self.model.get_text_features(**tokens)).float()

        return F.normalize(_batched(run, list(texts), self.batch_size), dim=-1).cpu()
