"""DreamBench metrics as torchmetrics `Metric`s: DINO, CLIP-I (subject fidelity) and CLIP-T (prompt fidelity).

- DINO / CLIP-I (`SubjectFidelity`): mean cosine similarity between the embeddings of generated and real images of
  the same subject; "all" pairs every generated image with every real one (DreamBooth's "average pairwise cosine
  similarity"), "one_to_one" pairs them in order.
- CLIP-T (`CLIPTextScore`): mean cosine similarity between each generated image and its prompt.

States are a sum and a count, reduced with "sum" across processes, so a metric merged from several processes (or
several `merge_state` calls) equals one metric over all the data. Each `update` accepts PIL images (encoded with
the metric's encoder) or embeddings (N, D). Protocol choices are constructor arguments and are reported by
`protocol()` beside every result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

PAIRINGS = ("all", "one_to_one")


def cosine_sum(a: Tensor, b: Tensor, pairing: str = "all") -> tuple[Tensor, int]:
    """(sum of cosines, number of pairs) between rows of a (N, D) and b (M, D)."""
    a, b = F.normalize(a.double(), dim=-1), F.normalize(b.double(), dim=-1)
    if pairing == "all":
        return (a @ b.T).sum(), a.shape[0] * b.shape[0]
    if pairing == "one_to_one":
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"one_to_one pairing needs as many generated as real images, got {len(a)} and {len(b)}")
        return (a * b).sum(), a.shape[0]
    raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")


def real_vs_real(emb: Tensor) -> tuple[Tensor, int]:
    """The "Real images" row of Table 1: all pairs of distinct real images of one subject."""
    emb = F.normalize(emb.double(), dim=-1)
    sims = emb @ emb.T
    n = emb.shape[0]
    return sims.sum() - sims.diagonal().sum(), n * (n - 1)


class _MeanCosine(Metric):
    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, encoder=None, scale100: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.scale100 = encoder, scale100
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _images(self, items) -> Tensor:
        if isinstance(items, Tensor):
            return items
        if self.encoder is None:
            raise ValueError(f"{type(self).__name__}: pass embeddings, or build the metric with an encoder")
        return self.encoder.encode_images(list(items))

    def _add(self, total: Tensor, count: int) -> None:
        self.total += total.to(self.total)
        self.count += count

    def compute(self) -> Tensor:
        mean = self.total / self.count.clamp(min=1)
        return (mean * 100 if self.scale100 else mean).float()


class SubjectFidelity(_MeanCosine):
    """Mean cosine between generated and real images' embeddings (DINO score / CLIP-I score).

    Args:
        encoder: an image encoder (`DinoEncoder` for DINO, `ClipEncoder` for CLIP-I); optional with embeddings.
        pairing: "all" generated x real pairs (DreamBooth) or "one_to_one".
        scale100: report x100 (some papers) instead of [-1, 1] (DreamBooth, HiFi Tuner).
    """

    def __init__(self, encoder=None, pairing: str = "all", scale100: bool = False, name: str = "dino", **kwargs):
        if pairing not in PAIRINGS:
            raise ValueError(f"--metrics.pairing must be one of {PAIRINGS}, got {pairing!r}")
        super().__init__(encoder, scale100, **kwargs)
        self.pairing, self.name = pairing, name

    def update(self, generated, real) -> None:
        self._add(*cosine_sum(self._images(generated), self._images(real), self.pairing))

    def protocol(self) -> dict:
        return {
            "metric": self.name,
            "encoder": getattr(self.encoder, "name", None),
            "pairing": self.pairing,
            "scale100": self.scale100,
        }


class DINOScore(SubjectFidelity):
    """DINO score (DreamBooth protocol: ViT-S/16, all pairs, not scaled)."""

    def __init__(self, encoder=None, pairing: str = "all", scale100: bool = False, **kwargs):
        super().__init__(encoder, pairing, scale100, name="dino", **kwargs)


class CLIPImageScore(SubjectFidelity):
    """CLIP-I score (CLIP image embeddings, all pairs, not scaled)."""

    def __init__(self, encoder=None, pairing: str = "all", scale100: bool = False, **kwargs):
        super().__init__(encoder, pairing, scale100, name="clip_i", **kwargs)


class CLIPTextScore(_MeanCosine):
    """CLIP-T: mean cosine between each generated image and its prompt's CLIP text embedding.

    Args:
        encoder: a `ClipEncoder` (needs `encode_images` and `encode_texts`); optional with embeddings.
        scale100: report x100 instead of [-1, 1].
    """

    def __init__(self, encoder=None, scale100: bool = False, **kwargs):
        super().__init__(encoder, scale100, **kwargs)

    def update(self, images, texts) -> None:
        img = self._images(images)
        if isinstance(texts, Tensor):
            txt = texts
        else:
            if self.encoder is None:
                raise ValueError("CLIPTextScore: pass text embeddings, or build the metric with an encoder")
            txt = self.encoder.encode_texts(list(texts))
        if txt.shape[0] == 1 and img.shape[0] > 1:
            txt = txt.expand(img.shape[0], -1)
        self._add(*cosine_sum(img, txt, "one_to_one"))

    def protocol(self) -> dict:
        return {"metric": "clip_t", "encoder": getattr(self.encoder, "name", None), "scale100": self.scale100}
