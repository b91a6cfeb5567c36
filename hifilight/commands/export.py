"""`hifilight export onnx|checkpoint|lora`: the base model as ONNX (checked against torch, in diffusers' layout), a
diffusers folder (a DreamBooth result) as one original-layout `.safetensors` checkpoint, or a LoRA subject in
kohya's layout (A1111, ComfyUI).

hifilight export onnx --model.pretrained CompVis/stable-diffusion-v1-4 --out onnx/
hifilight export checkpoint --model.pretrained outputs/dog_dreambooth --out dog.safetensors
hifilight export lora --subject dog_lora.safetensors --out dog_kohya.safetensors
"""

from __future__ import annotations

from pathlib import Path

from hifilight.commands.common import note_random_weights, run_group
from hifilight.errors import HifiError
from hifilight.options import ModelOptions


def export_onnx(
    out: Path = Path("outputs/onnx"),
    model: ModelOptions | None = None,
    check: bool = True,
    tolerance: float = 1e-4,
    overwrite: bool = False,
) -> None:
    """Export the base model's UNet, VAE decoder and encoder and text encoder to ONNX (opset 17, dynamic batch and
    size) in the layout diffusers' OnnxStableDiffusionPipeline and Optimum read.

    Args:
        out: output folder (<part>/model.onnx, tokenizer/, scheduler/, model_index.json, hifilight_onnx.json), enough
            for `hifilight predict --onnx`, the service's onnx backend and diffusers.
        model: base model to export ("tiny", a hub id or a local folder, e.g. a DreamBooth output); exported in
            float32 on the CPU.
        check: run each part with onnxruntime and torch on fresh inputs and print the max abs difference.
        tolerance: fail (keeping nothing) when a difference exceeds this.
        overwrite: replace an existing output folder.
    """
    from hifilight.export.onnx import export_onnx as export
    from hifilight.models import load_components

    model = model or ModelOptions()
    pretrained = model.pretrained or "tiny"
    note_random_weights(pretrained)
    comps = load_components(pretrained, "float32", "cpu")
    _refuse_sdxl(comps, pretrained)
    diffs = export(comps, Path(out), overwrite, check)
    for name, diff in diffs.items():
        print(f"{name}: max |onnxruntime - torch| = {diff:.2e}")
    bad = {k: v for k, v in diffs.items() if v > tolerance}
    if bad:
        import shutil

        shutil.rmtree(out)
        raise HifiError(f"ONNX parity above --tolerance {tolerance}: {bad}; nothing was kept")
    print(f"wrote {out} (diffusers: OnnxStableDiffusionPipeline.from_pretrained({str(out)!r}))")


def export_checkpoint(
    out: Path,
    model: ModelOptions | None = None,
    half: bool = False,
    overwrite: bool = False,
) -> None:
    """Write a diffusers Stable Diffusion folder (e.g. a DreamBooth output) as one `.safetensors` checkpoint in the
    original SD layout (UNet, VAE and text encoder), the file A1111 / ComfyUI load and diffusers reads with
    `StableDiffusionPipeline.from_single_file(path, config=<the folder or its base model>)`; an SDXL folder in
    SDXL's original layout (both text encoders), read by `StableDiffusionXLPipeline.from_single_file`.

    Args:
        out: the checkpoint file (.safetensors).
        model: the model to write ("tiny", "toysd", a hub id or a local folder).
        half: store float16 (half the size; SD 1.x: ~2.1 GB instead of ~4.2 GB).
        overwrite: replace an existing file.
    """
    import torch

    from hifilight.export.checkpoint import save_checkpoint
    from hifilight.io import check_output_path
    from hifilight.models import load_components
    from hifilight.models.sdxl import is_sdxl

    out = Path(out)
    if out.suffix != ".safetensors":
        raise HifiError(f"--out {out}: a checkpoint is written as .safetensors; name it e.g. {out.stem}.safetensors")
    check_output_path(out, overwrite, "--out")
    model = model or ModelOptions()
    pretrained = model.pretrained or "tiny"
    note_random_weights(pretrained)
    comps = load_components(pretrained, "float32", "cpu")
    n = save_checkpoint(comps, out, torch.float16 if half else torch.float32, overwrite)
    layout, pipeline = ("SDXL", "StableDiffusionXLPipeline") if is_sdxl(comps) else ("SD", "StableDiffusionPipeline")
    print(
        f"wrote {out} ({n} tensors, original {layout} layout; diffusers: {pipeline}.from_single_file("
        f"{str(out)!r}, config={pretrained!r}))"
    )


def export_lora(subject: Path, out: Path, overwrite: bool = False) -> None:
    """Write a LoRA subject (`hifilight fit --method lora`) in kohya's key layout, the one AUTOMATIC1111, ComfyUI and
    kohya sd-scripts load (diffusers' `load_lora_weights` reads it too).

    Args:
        subject: the LoRA subject file (.safetensors, diffusers' layout).
        out: the kohya-layout file (.safetensors).
        overwrite: replace an existing file.
    """
    from hifilight.export.lora import export_kohya

    print(export_kohya(Path(subject), Path(out), overwrite))


def run(argv: list[str]) -> None:
    commands = {"onnx": export_onnx, "checkpoint": export_checkpoint, "lora": export_lora}
    run_group(commands, "hifilight export", argv)


def _refuse_sdxl(comps, pretrained: str) -> None:
    """The ONNX export writes diffusers' `OnnxStableDiffusionPipeline` layout; diffusers has no ONNX SDXL pipeline
    to load one (optimum's ORTStableDiffusionXLPipeline is a separate package and layout)."""
    from hifilight.models.sdxl import is_sdxl

    if is_sdxl(comps):
        raise HifiError(
            f"export onnx: --model.pretrained {pretrained} is SDXL, and diffusers has no ONNX SDXL pipeline to load "
            "the export (use `hifilight export checkpoint` for a single-file SDXL, or optimum for ONNX)"
        )
