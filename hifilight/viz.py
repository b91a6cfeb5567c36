"""Figures: attention heat maps laid out like the paper's Figure 3."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

# A perceptually ordered dark-to-bright ramp (black, purple, red, orange, yellow-white), interpolated.
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)


def heatmap(values: torch.Tensor, size: int) -> Image.Image:
    """A 2-D map normalised to its own [min, max] and coloured with the ramp, resized to size x size."""
    arr = values.detach().float().cpu().numpy()
    span = arr.max() - arr.min()
    norm = (arr - arr.min()) / span if span > 0 else np.zeros_like(arr)
    pos = norm * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return Image.fromarray(rgb.round().astype(np.uint8)).resize((size, size), Image.NEAREST)


def attention_figure(image: Image.Image, maps: dict[str, torch.Tensor], tile: int = 96, label_width: int = 60):
    """The generated image on top; below, one row per label with a heat map per token (maps[label]: (n, r, r))."""
    n = next(iter(maps.values())).shape[0]
    width = label_width + n * tile
    top = image.resize((tile * 2, tile * 2), Image.BICUBIC)
    canvas = Image.new("RGB", (width, top.height + len(maps) * tile + 4), "white")
    canvas.paste(top, ((width - top.width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (label, token_maps) in enumerate(maps.items()):
        y = top.height + 4 + row * tile
        draw.text((6, y + tile // 2 - 6), label, fill="black")
        for col in range(n):
            canvas.paste(heatmap(token_maps[col], tile), (label_width + col * tile, y))
    return canvas


def labelled_rows(lines: list[tuple[str, list[Image.Image]]], tile: int = 64, label_width: int = 150) -> Image.Image:
    """One picture to read side by side: a line per (label, images), the label on the left, the images resized to
    tile x tile; shorter lines end in white."""
    if not lines or not any(images for _, images in lines):
        raise ValueError("labelled_rows needs at least one line with images")
    cols = max(len(images) for _, images in lines)
    canvas = Image.new("RGB", (label_width + cols * tile, len(lines) * tile), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (label, images) in enumerate(lines):
        y = row * tile
        for k, part in enumerate(_wrap(label, label_width // 6)):
            draw.text((4, y + 4 + 12 * k), part, fill="black")
        for col, image in enumerate(images):
            canvas.paste(image.convert("RGB").resize((tile, tile), Image.BICUBIC), (label_width + col * tile, y))
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    """Words of `text` in lines of at most `width` characters (a longer word gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines
