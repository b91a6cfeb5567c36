"""`hifilight invert`: DDIM inversion of a photo, then null-text inversion (Eq. 3-4), with reconstruction PSNRs.

hifilight invert --image photo.jpg --caption "a photo of a sitting cat" --out inv/
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from hifilight.commands.common import function_parser, note_random_weights, run_function
from hifilight.data.images import load_rgb, square_photo, to_pil, to_tensor
from hifilight.errors import HifiError
from hifilight.io import check_writable, save_png, write_atomic
from hifilight.models import load_components
from hifilight.options import ModelOptions, resolve_device
from hifilight.sampling.null_text import NullTextSettings, invert_photo

OUTPUTS = ("null_text.safetensors", "reconstruction.png", "ddim_reconstruction.png")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def invert(
    image: Path,
    caption: str,
    out: Path = Path("outputs/invert"),
    model: ModelOptions | None = None,
    steps: int = 50,
    guidance: float = 7.5,
    resolution: int = 512,
    null_text: NullTextSettings | None = None,
    overwrite: bool = False,
) -> None:
    """Invert a photo: DDIM inversion with the caption (guidance 1), then per-step null-text optimisation.

    Args:
        image: the photo (centre-cropped to a square and resized to `resolution`).
        caption: its caption, e.g. "a photo of a sitting cat".
        out: folder for null_text.safetensors (phi_t per step, x_T*, metadata), reconstruction.png and
            ddim_reconstruction.png.
        model: base model options (default: tiny; pass --model.pretrained for real weights).
        steps: DDIM steps (reference: 50).
        guidance: classifier-free guidance used when replaying (reference: 7.5).
        resolution: working size in pixels (512 for SD1.x).
        null_text: null-text optimisation schedule.
        overwrite: replace existing outputs.
    """
    model, settings = model or ModelOptions(pretrained="tiny"), null_text or NullTextSettings()
    if not caption.strip():
        raise HifiError("--caption is empty; describe the photo, e.g. 'a photo of a sitting cat'")
    if settings.inner_steps < 1:
        raise HifiError(f"--null_text.inner_steps must be >= 1, got {settings.inner_steps}")
    for name in OUTPUTS:
        check_writable(Path(out) / name, overwrite, "--overwrite")
    if not Path(image).is_file():
        raise HifiError(f"--image {image}: no such file")
    pretrained = model.pretrained or "tiny"
    note_random_weights(pretrained)
    comps = load_components(pretrained, model.dtype, resolve_device(model.device))
    if resolution % comps.vae_scale_factor:
        raise HifiError(f"--resolution must be a multiple of {comps.vae_scale_factor}, got {resolution}")
    photo = square_photo(load_rgb(Path(image)), resolution)
    inv = invert_photo(comps, to_tensor(photo)[None], caption, steps, guidance, settings)
    meta = {"caption": caption, "base_model": pretrained, "steps": steps, "guidance": guidance,
            "resolution": resolution, "null_text": vars(settings), "image": str(image)}  # fmt: skip
    tensors = {"phi_t": inv.phis, "timesteps": inv.timesteps, "x_T": inv.x_T}
    write_atomic(
        Path(out) / OUTPUTS[0], lambda tmp: save_file(tensors, str(tmp), {"hifilight": json.dumps(meta)}), overwrite
    )
    save_png(to_pil(inv.null_text_replay[0]), Path(out) / OUTPUTS[1], overwrite)
    save_png(to_pil(inv.ddim_replay[0]), Path(out) / OUTPUTS[2], overwrite)
    target = (to_tensor(photo)[None] + 1) / 2
    print(
        f"reconstruction PSNR: DDIM inversion {psnr(inv.ddim_replay, target):.2f} dB, null-text inversion "
        f"{psnr(inv.null_text_replay, target):.2f} dB"
    )
    print(f"wrote {', '.join(OUTPUTS)} to {out}")


def build_parser():
    return function_parser(invert, "hifilight invert")


def run(argv: list[str]) -> None:
    run_function(invert, "hifilight invert", argv)
