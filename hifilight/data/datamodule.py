"""`SubjectDataModule`: a few photos of one subject, their masks, and captions, served for stage-1 training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from hifilight.data.draws import StepBatchSampler, sample_generator
from hifilight.data.images import list_images, load_rgb, to_tensor
from hifilight.data.masks import build_mask_provider
from hifilight.errors import HifiError
from hifilight.perception.grounded_sam import GroundedSamSettings
from hifilight.prompts import render


@dataclass
class SubjectImage:
    path: Path
    pixels: torch.Tensor  # (3, H, W) in [-1, 1], short side == resolution
    mask: torch.Tensor  # (1, H, W) in {0, 1}


def _resize_short_side(img: Image.Image, size: int) -> Image.Image:
    scale = size / min(img.size)
    return img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)


def _center_window(h: int, w: int) -> tuple[int, int, int]:
    short = min(h, w)
    return (h - short) // 2, (w - short) // 2, short


def _crop(x: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    return x[:, top : top + side, left : left + side]


class SubjectDataset(Dataset):
    """Yields dicts with `pixels` (3, R, R), `mask` (1, R, R), `caption` and `cache_key`.

    `cache_key` identifies the exact pixels of a sample ("<image>:<flipped>") when the crop is deterministic, so
    the training module can cache VAE latents; it is "" with random crops (nothing to cache).
    """

    def __init__(
        self,
        images: list[SubjectImage],
        captions: list[str],
        resolution: int,
        flip_p: float,
        crop: str,
        crop_scale: float,
        length: int,
        seed: int = 0,
        index_only_from: int | None = None,
    ):
        self.images, self.captions, self.resolution = images, captions, resolution
        self.flip_p, self.crop, self.crop_scale, self.length, self.seed = flip_p, crop, crop_scale, length, seed
        self.index_only_from = index_only_from

    def __len__(self) -> int:
        return self.length

    def _window(self, h: int, w: int, g: torch.Generator) -> tuple[int, int, int]:
        if self.crop == "center":
            return _center_window(h, w)
        short = min(h, w)
        scale = self.crop_scale + (1.0 - self.crop_scale) * torch.rand((), generator=g).item()
        side = max(8, round(short * scale**0.5))
        top = int(torch.randint(0, h - side + 1, (), generator=g))
        return top, int(torch.randint(0, w - side + 1, (), generator=g)), side

    def view(self, idx: int, flipped: bool, window: tuple[int, int, int] | None = None) -> dict:
        """Image `idx` cropped to `window` (default: the centre square), resized and optionally flipped."""
        item = self.images[idx]
        top, left, side = window or _center_window(*item.pixels.shape[-2:])
        pixels, mask = _crop(item.pixels, top, left, side), _crop(item.mask, top, left, side)
        if side != self.resolution:
            pixels = F.interpolate(pixels[None], size=self.resolution, mode="bilinear", antialias=True)[0]
            mask = F.interpolate(mask[None], size=self.resolution, mode="nearest")[0]
        if flipped:
            pixels, mask = pixels.flip(-1), mask.flip(-1)
        cacheable = window is None or self.crop == "center"
        return {"pixels": pixels, "mask": mask, "cache_key": f"{idx}:{int(flipped)}" if cacheable else ""}

    def __getitem__(self, n: int) -> dict:
        """Global sample n (see `hifilight.data.draws`): drawn from (seed, n) alone. From `index_only_from` on,
        only its id and an empty caption (a training stage that draws its own views needs no pixels)."""
        if self.index_only_from is not None and n >= self.index_only_from:
            return {"sample_id": n, "caption": ""}
        count = len(self.images)
        idx = int(torch.randperm(count, generator=sample_generator(self.seed, n // count, stream=2))[n % count])
        g = sample_generator(self.seed, n)
        window = self._window(*self.images[idx].pixels.shape[-2:], g)
        flipped = torch.rand((), generator=g).item() < self.flip_p
        caption = self.captions[int(torch.randint(len(self.captions), (), generator=g))]
        return self.view(idx, flipped, window) | {"caption": caption, "sample_id": n}


class SubjectDataModule(L.LightningDataModule):
    def __init__(
        self,
        subject_dir: Path,
        class_name: str,
        masks: Literal["auto", "files", "grounded_sam", "grabcut", "toyworld", "none"] = "auto",
        masks_dir: Path | None = None,
        caption_templates: list[str] | None = None,
        resolution: int = 512,
        flip_p: float = 0.5,
        crop: Literal["center", "random"] = "center",
        crop_scale: float = 0.8,
        batch_size: int = 1,
        num_workers: int = 0,
        samples_per_epoch: int = 100,
        segmentation: GroundedSamSettings | None = None,
        seed: int = 0,
    ):
        """Photos of one subject for stage-1 training.

        Args:
            subject_dir: folder with 3-6 photos of the subject (jpg/png/webp/bmp).
            class_name: the subject's class word, e.g. "dog"; fills the caption templates.
            masks: subject masks for Eq. (5). "files": mask images (white = subject, same stem) in masks_dir;
                "grounded_sam": Grounding DINO + SAM from the class name (the paper's choice; --data.segmentation.*);
                "grabcut": OpenCV GrabCut from a centre prior (no weights; check with `hifilight masks`);
                "toyworld": ToySAM (ToyWorld images only); "none": whole image (unmasked, Eq. 2); "auto": "files" if
                masks_dir (default subject_dir/masks) exists, else "grounded_sam" if its weights are local (folder or
                hub cache), else "grabcut".
            masks_dir: folder of mask images (default: subject_dir/masks).
            caption_templates: training captions; {} or <subject> marks the class word (default "a photo of a {}").
            resolution: square training resolution in pixels (512 for SD1.x); a multiple of 8.
            flip_p: probability of a horizontal flip (image and mask together).
            crop: "center" (deterministic, VAE latents are cached) or "random" (random square crops).
            crop_scale: smallest area fraction of a random crop.
            batch_size: images per training step.
            num_workers: DataLoader workers.
            samples_per_epoch: length of one (virtual) epoch; training length is set by --trainer.max_steps.
            segmentation: Grounded SAM settings for --data.masks grounded_sam (model ids, thresholds, fallback).
            seed: seed of the per-sample draws (image order, flip, crop, caption); sample n depends on (seed, n)
                only, so N devices with batch b see what one device with batch N*b sees.
        """
        super().__init__()
        if resolution < 8 or resolution % 8:
            raise HifiError(f"--data.resolution must be a positive multiple of 8, got {resolution}")
        if not 0.0 <= flip_p <= 1.0:
            raise HifiError(f"--data.flip_p must be in [0, 1], got {flip_p}")
        if not 0.0 < crop_scale <= 1.0:
            raise HifiError(f"--data.crop_scale must be in (0, 1], got {crop_scale}")
        if batch_size < 1:
            raise HifiError(f"--data.batch_size must be >= 1, got {batch_size}")
        if not class_name.strip():
            raise HifiError("--data.class_name is empty; pass the subject's class word, e.g. --data.class_name dog")
        self.subject_dir = Path(subject_dir).expanduser()
        self.image_paths = list_images(self.subject_dir)
        self.class_name = class_name.strip()
        self.caption_templates = list(caption_templates or ["a photo of a {}"])
        self.captions = [render(t, self.class_name, "--data.caption_templates") for t in self.caption_templates]
        self.mask_provider = build_mask_provider(masks, self.subject_dir, masks_dir, self.class_name, segmentation)
        self.resolution, self.flip_p, self.crop, self.crop_scale = resolution, flip_p, crop, crop_scale
        self.batch_size, self.num_workers, self.samples_per_epoch = batch_size, num_workers, samples_per_epoch
        self.seed = seed
        self.images: list[SubjectImage] = []
        # Global samples from this index on carry only their id: set by a training module whose later steps do not
        # use the loader's pixels (the step-wise stage draws from the fixed source set X_0 instead).
        self.index_only_from: int | None = None

    def load_images(self) -> list[SubjectImage]:
        items = []
        for path in self.image_paths:
            img = load_rgb(path)
            mask = self.mask_provider(path, img)
            img = _resize_short_side(img, self.resolution)
            mask = F.interpolate(mask[None], size=(img.height, img.width), mode="nearest")[0]
            items.append(SubjectImage(path, to_tensor(img), mask))
        return items

    def setup(self, stage: str | None = None) -> None:
        if not self.images:
            self.images = self.load_images()

    def dataset(self, length: int | None = None) -> SubjectDataset:
        self.setup()
        length = length or max(self.samples_per_epoch, self.batch_size)
        return SubjectDataset(
            self.images,
            self.captions,
            self.resolution,
            self.flip_p,
            self.crop,
            self.crop_scale,
            length,
            self.seed,
            self.index_only_from,
        )

    def fixed_views(self) -> list[dict]:
        """The source set X_0 of Algorithm 1: every image at its centre crop, and mirrored when flips are on."""
        ds = self.dataset()
        flips = (False, True) if self.flip_p > 0 else (False,)
        return [ds.view(idx, flipped) for idx in range(len(self.images)) for flipped in flips]

    def train_dataloader(self) -> DataLoader:
        """Batches of global sample indices from the current step on, this process's share (see
        `hifilight.data.draws`); Lightning must not swap in its DistributedSampler (the fit CLI sets
        use_distributed_sampler false)."""
        dataset = self.dataset()
        steps = max(1, self.samples_per_epoch // self.batch_size)
        sampler = StepBatchSampler(self.batch_size, steps, self._position)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers)

    def _position(self) -> tuple[int, int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        return trainer.global_step * trainer.accumulate_grad_batches, trainer.global_rank, trainer.world_size
