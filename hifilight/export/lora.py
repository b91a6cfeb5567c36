"""A LoRA subject (`hifilight fit --method lora`, diffusers' layout) in kohya's key layout, the one AUTOMATIC1111,
ComfyUI, SD.Next and kohya sd-scripts read: `lora_unet_<module>.lora_down/lora_up/alpha`. The conversion is
diffusers' own (`convert_unet_state_dict_to_peft`, then `convert_state_dict_to_kohya`); the alpha is the one the
subject was trained with, so the adapter's scale (alpha / rank) is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hifilight.errors import HifiError


def kohya_state_dict(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """diffusers-layout UNet LoRA tensors (`unet.<module>.lora.down/up.weight`) -> kohya's layout."""
    from diffusers.utils import convert_state_dict_to_kohya, convert_unet_state_dict_to_peft

    unet = {k.removeprefix("unet."): v for k, v in state.items()}
    peft = {f"unet.{k}": v for k, v in convert_unet_state_dict_to_peft(unet).items()}
    kohya = convert_state_dict_to_kohya(peft)
    return {k: torch.tensor(float(alpha)) if k.endswith(".alpha") else v.contiguous() for k, v in kohya.items()}


def export_kohya(subject: Path, out: Path, overwrite: bool = False) -> str:
    """Write `subject` (a hifilight LoRA file) as a kohya-layout .safetensors; returns a one-line summary."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from hifilight.io import check_output_path, write_atomic
    from hifilight.subjects import load_subject

    if load_subject(subject).kind != "lora":
        raise HifiError(f"--subject {subject}: not a LoRA subject; fit one with `hifilight fit --method lora`")
    if Path(out).suffix != ".safetensors":
        raise HifiError(f"--out {out}: write a .safetensors file")
    check_output_path(Path(out), overwrite, "--out")
    with safe_open(str(subject), "pt") as f:
        meta = json.loads(f.metadata()["hifilight"])
        names = f.keys()
        state = {k: f.get_tensor(k) for k in names}
    kohya = kohya_state_dict(state, meta["alpha"])
    header = {
        "format": "pt",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(meta["rank"]),
        "ss_network_alpha": str(meta["alpha"]),
        "hifilight": json.dumps(meta),
    }
    write_atomic(Path(out), lambda tmp: save_file(kohya, str(tmp), metadata=header), overwrite=overwrite)
    modules = sum(k.endswith(".alpha") for k in kohya)
    return f"wrote {out}: {modules} LoRA modules in kohya's layout (rank {meta['rank']}, alpha {meta['alpha']})"
