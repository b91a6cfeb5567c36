"""Reading subject photos: any common format, EXIF orientation applied, always RGB."""

from __future__ import annotations

import sys
import warnings
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


# Larger images are refused before they are decoded (a 20000 x 20000 PNG would take ~1.2 GB as RGB); Pillow's
# own decompression-bomb guard is replaced by this one-line check.
MAX_PIXELS = 100_000_000
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16/32-bit grayscale: PNG, TIFF


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():  # Pillow warns above 89 MP; the check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            if img.width * img.height > MAX_PIXELS:
                raise HifiError(
                    f"{path}: {img.width} x {img.height} is more than {MAX_PIXELS // 1_000_000} megapixels; "
                    "downscale it (the model trains at 512 px) or remove it"
                )
            img.load()
            return to_8bit(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:
        raise HifiError(
            f"{path}: too many pixels (over {MAX_PIXELS // 1_000_000} megapixels); downscale it or remove it"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise HifiError(f"{path}: unreadable or truncated image ({err}); re-export it or remove it") from err


def to_8bit(img: Image.Image) -> Image.Image:
    """High-bit-depth grayscale (16-bit PNG / TIFF, 32-bit int or float) scaled to 8-bit "L" by its type's range
    (Pillow's own convert would clip everything above 255 to white). 16-bit RGB already arrives as 8-bit RGB."""
    if img.mode not in HIGH_BIT_MODES:
        return img
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        top = 1.0  # float images in [0, 1]
    elif img.mode in ("I", "F") and arr.size and np.nanmax(arr) > 65535:
        top = float(np.nanmax(arr))  # wider than 16 bit: its own maximum
    else:
        top = 65535.0
    scaled = np.nan_to_num(arr / top * 255.0).clip(0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)


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


def square_photo(image: Image.Image, size: int) -> Image.Image:
    """A real photo for inversion or replacement: centre-cropped and resized to size x size, saying so when it
    changes the photo."""
    if image.width != image.height or image.width != size:
        print(
            f"note: the {image.width}x{image.height} photo is centre-cropped and resized to {size}x{size}",
            file=sys.stderr,
        )
    return center_square(image, size)
