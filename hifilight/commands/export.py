"""`hifilight export onnx`: the UNet, VAE decoder and text encoder as ONNX, checked against torch.

hifilight export onnx --model.pretrained CompVis/stable-diffusion-v1-4 --out onnx/
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
    diffs = export(comps, Path(out), overwrite, check)
    for name, diff in diffs.items():
        print(f"{name}: max |onnxruntime - torch| = {diff:.2e}")
    bad = {k: v for k, v in diffs.items() if v > tolerance}
    if bad:
        import shutil

        shutil.rmtree(out)
        raise HifiError(f"ONNX parity above --tolerance {tolerance}: {bad}; nothing was kept")
    print(f"wrote {out} (diffusers: OnnxStableDiffusionPipeline.from_pretrained({str(out)!r}))")


def run(argv: list[str]) -> None:
    run_group({"onnx": export_onnx}, "hifilight export", argv)
