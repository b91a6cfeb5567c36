"""ToyWorld's small perception models, trained here on fresh renders (subjects held out), weights in safetensors:

- `ToyClassifier`: reads shape, colour, pattern, pattern colour and background from an image (the exact-measure
  readers); its L2-normalised penultimate features are ToyDINO, the stand-in for DINO (reference selection, a
  DINO-like fidelity score).
- `ToySegmenter`: a small encoder-decoder that segments the object (box-free), the stand-in for SAM.

`hifilight toyworld train models` (or `make toyworld-train`) retrains both from a seed and rewrites the
committed weights; tests only load them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hifilight.toyworld import world
from hifilight.toyworld.dataset import pretraining_objects
from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, PATTERNS, SHAPES, random_scene, render

ATTRIBUTES = {"shape": list(SHAPES), "color": list(COLORS), "pattern": list(PATTERNS),
              "pattern_color": list(COLORS), "background": list(BACKGROUNDS)}  # fmt: skip
SIZE = 64


def to_input(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, SIZE, SIZE) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True) if x.shape[-1] != SIZE else x


def sample(rng: np.random.Generator, n: int, objects=None) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """n fresh renders of pretraining objects: inputs, attribute labels (-100 = not defined), masks."""
    objects = objects or pretraining_objects()
    images, masks, labels = [], [], {k: [] for k in ATTRIBUTES}
    for i in rng.integers(len(objects), size=n):
        obj = objects[i]
        scene = random_scene(rng, obj)
        image, mask = render(scene, SIZE)
        images.append(image)
        masks.append(mask)
        values = {
            "shape": obj.shape,
            "color": obj.color,
            "pattern": obj.pattern,
            "background": scene.background,
            "pattern_color": obj.pattern_color if obj.pattern != "plain" else None,
        }
        for key, value in values.items():
            labels[key].append(ATTRIBUTES[key].index(value) if value is not None else -100)
    return (
        to_input(np.stack(images)),
        {k: torch.tensor(v) for k, v in labels.items()},
        torch.from_numpy(np.stack(masks)).float()[:, None],
    )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class ToyClassifier(nn.Module):
    def __init__(self, width: int = 32, dim: int = 128):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w),
            nn.MaxPool2d(2),
            _block(w, w * 2),
            nn.MaxPool2d(2),
            _block(w * 2, w * 4),
            nn.MaxPool2d(2),
            _block(w * 4, w * 4),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(w * 4, dim),
            nn.SiLU(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(dim, len(v)) for k, v in ATTRIBUTES.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.features(x)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def embed(self, x: Tensor) -> Tensor:
        """ToyDINO: L2-normalised features (object identity and background)."""
        return F.normalize(self.features(x), dim=-1)


class ToySegmenter(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.down1, self.down2 = _block(3, width), _block(width, width * 2)
        self.mid = _block(width * 2, width * 2)
        self.up = _block(width * 3, width)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.down1(x)
        b = self.mid(self.down2(F.max_pool2d(a, 2)))
        return self.out(self.up(torch.cat([a, F.interpolate(b, scale_factor=2.0)], dim=1)))


def classifier_loss(model: ToyClassifier, x: Tensor, labels: dict[str, Tensor]) -> Tensor:
    out = model(x)
    return sum(F.cross_entropy(out[k], labels[k], ignore_index=-100) for k in ATTRIBUTES)


def train(
    kind: str, steps: int, seed: int = 0, batch: int = 64, lr: float = 2e-3, model: nn.Module | None = None
) -> nn.Module:
    """Train a classifier or segmenter on fresh renders of the current world; `model`: continue from it."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = model or (ToyClassifier() if kind == "classifier" else ToySegmenter())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(steps):
        x, labels, masks = sample(rng, batch)
        loss = (
            classifier_loss(model, x, labels)
            if kind == "classifier"
            else F.binary_cross_entropy_with_logits(model(x), masks)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: ToyClassifier, n: int = 512, seed: int = 12345, transform=None) -> dict[str, float]:
    """Per-attribute accuracy on fresh renders (a seed the training never used), optionally after `transform`."""
    x, labels, _ = sample(np.random.default_rng(seed), n)
    out = model(transform(x) if transform else x)
    return {k: float((out[k].argmax(-1) == labels[k])[labels[k] >= 0].float().mean()) for k in ATTRIBUTES}


@torch.no_grad()
def mean_iou(model: ToySegmenter, n: int = 256, seed: int = 12345) -> float:
    x, _, masks = sample(np.random.default_rng(seed), n)
    pred = model(x) > 0
    truth = masks > 0.5
    inter, union = (pred & truth).flatten(1).sum(1), (pred | truth).flatten(1).sum(1)
    return float((inter / union.clamp(min=1)).mean())


def save(model: nn.Module, name: str) -> Path:
    """Write `name`.safetensors in the current world's weights folder (`world.weights_dir`)."""
    world.weights_dir().mkdir(parents=True, exist_ok=True)
    path = world.weights_dir() / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def load(name: str) -> nn.Module:
    model = ToyClassifier() if name.startswith("classifier") else ToySegmenter()
    model.load_state_dict(load_file(str(world.weights_dir() / f"{name}.safetensors")))
    return model.eval()


@dataclass
class ReadersArgs:
    """Options of `hifilight toyworld train models` (ToyWorld's classifier, ToyDINO, and segmenter, ToySAM).

    Args:
        classifier_steps: the classifier's training steps.
        segmenter_steps: the segmenter's training steps.
        seed: seed of the weights and the renders.
        threads: CPU threads.
    """

    classifier_steps: int = 6000
    segmenter_steps: int = 600
    seed: int = 0
    threads: int = 2


def train_readers(args: ReadersArgs, log=print) -> None:
    """Train both readers from a seed into the current world's folder and log each one's score on fresh renders."""
    torch.set_num_threads(args.threads)
    for kind, steps in (("classifier", args.classifier_steps), ("segmenter", args.segmenter_steps)):
        start = time.perf_counter()
        model = train(kind, steps, args.seed)
        path = save(model, kind)
        score = accuracy(model) if kind == "classifier" else {"mean_iou": mean_iou(model)}
        log(f"{kind}: {steps} steps in {time.perf_counter() - start:.0f} s -> {path} {score}")
