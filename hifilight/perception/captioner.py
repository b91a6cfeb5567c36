"""Image captioning behind one interface: BLIP-2 through transformers (paper Sec. 3.3/3.4), or the user's caption.

Reference-guided generation captions the reference photo to get c_r; subject replacement captions the input photo
to get c^r. A user can always pass the caption instead (`FixedCaption`), which also avoids loading BLIP-2.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from hifilight.errors import HifiError
from hifilight.models.loading import resolve_source

BLIP2_DEFAULT = "Salesforce/blip2-opt-2.7b"


class Captioner(Protocol):
    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image."""
        ...


class FixedCaption:
    """ "Use this caption instead": the same user-given caption for every image."""

    def __init__(self, text: str):
        if not text.strip():
            raise HifiError("--caption is empty; pass a caption such as 'a photo of a sitting cat' or drop the flag")
        self.text = text.strip()

    def caption(self, images: list[Image.Image]) -> list[str]:
        return [self.text for _ in images]


class Blip2Captioner:
    """BLIP-2 greedy captions (deterministic), batched."""

    def __init__(
        self,
        model: Blip2ForConditionalGeneration,
        processor: Blip2Processor,
        max_new_tokens: int = 30,
        batch_size: int = 8,
    ):
        self.model, self.processor = model.eval(), processor
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    @classmethod
    def from_pretrained(cls, source: str = BLIP2_DEFAULT, device: str = "cpu", dtype=torch.float32, **kwargs):
        path, local = resolve_source(source, "--captioner")
        try:
            model = Blip2ForConditionalGeneration.from_pretrained(path, local_files_only=local, dtype=dtype)
            processor = Blip2Processor.from_pretrained(path, local_files_only=local)
        except OSError as err:
            raise HifiError(
                f"--captioner {source}: could not load BLIP-2 ({str(err).splitlines()[0]}); download it and pass the "
                "folder, or give the caption yourself with --caption"
            ) from err
        return cls(model.to(device), processor, **kwargs)

    @torch.no_grad()
    def caption(self, images: list[Image.Image]) -> list[str]:
        captions = []
        for start in range(0, len(images), self.batch_size):
            chunk = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            inputs = self.processor(images=chunk, return_tensors="pt").to(self.model.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            captions += [text.strip() for text in self.processor.batch_decode(out, skip_special_tokens=True)]
        return captions


def captions_or_fallback(captioner: Captioner, images: list[Image.Image], fallback: str) -> list[str]:
    """Captions, with `fallback` (e.g. "a photo of a dog") for any that come back empty, and a warning."""
    out = []
    for i, text in enumerate(captioner.caption(images)):
        if not text:
            warnings.warn(f"image {i}: the captioner returned an empty caption; using {fallback!r}", stacklevel=2)
        out.append(text or fallback)
    return out
