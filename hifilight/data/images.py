"""Reading subject photos: any common format, EXIF orientation applied, always RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hifilight.errors import HifiError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(folder: Path, flag: str = "--data.subject_dir") -> list[Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HifiError(f"{flag} {folder}: no such folder; pass the folder that holds the subject's photos")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise HifiError(
            f"{flag} {folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); put 3-6 photos of the "
            "subject there"
        )
    return images


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise HifiError(f"{path}: unreadable or truncated image ({err}); re-export it or remove it") from err


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB: EXIF rotation applied, alpha composited on white, grayscale/CMYK/palette converted."""
    img = _open(path)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_gray(path: Path) -> np.ndarray:
    """Open an image as a 2-D uint8 array (EXIF rotation applied)."""
    return np.asarray(_open(path).convert("L"))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [-1, 1], the range the VAE expects."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return arr / 127.5 - 1.0


def to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> PIL RGB."""
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def center_square(image: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """Centre-crop to a square and resize to size x size."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), resample)
