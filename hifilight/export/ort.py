"""Sampling from an exported ONNX folder with onnxruntime, through the same engine and callbacks as torch.

Reads the diffusers layout `hifilight export onnx` writes (`<part>/model.onnx`) and the flat layout of earlier
versions (`<part>.onnx`); inputs are fed by position, in the dtype each graph declares.

`load_onnx_components(folder)` returns `SDComponents` whose unet / vae / text_encoder are thin onnxruntime
wrappers with the attributes the engine uses, so `generate(...)`, [c, c_s] and the per-step c_s^t (Eq. 7) run
unchanged. Textual Inversion subjects need the torch text encoder (new tokens change its embedding table).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import CLIPTokenizer

from hifilight.errors import HifiError
from hifilight.export.onnx import MANIFEST, WEIGHTS
from hifilight.models.loading import SDComponents, ddim_like_sd14

ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def part_path(folder: Path, name: str) -> Path:
    """`<name>/model.onnx` (diffusers layout), or `<name>.onnx` in a folder written by earlier versions."""
    flat = folder / f"{name}.onnx"
    return flat if flat.is_file() and not (folder / name / WEIGHTS).is_file() else folder / name / WEIGHTS


class _Session:
    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, path: Path, providers: list[str]):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=providers)
        self.inputs = [(i.name, ORT_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]

    def run(self, *arrays) -> torch.Tensor:
        feeds = {name: np.asarray(a).astype(dtype) for (name, dtype), a in zip(self.inputs, arrays, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


class OrtUNet(_Session):
    def __init__(self, path: Path, providers: list[str], in_channels: int):
        super().__init__(path, providers)
        self.config = SimpleNamespace(in_channels=in_channels)

    def __call__(self, sample, timestep, encoder_hidden_states=None):
        t = np.full((sample.shape[0],), int(timestep))
        out = self.run(sample.detach().float().cpu().numpy(), t, encoder_hidden_states.detach().float().cpu().numpy())
        return SimpleNamespace(sample=out.to(sample.device))


class OrtVaeDecoder(_Session):
    def __init__(self, path: Path, providers: list[str], manifest: dict):
        super().__init__(path, providers)
        self.config = SimpleNamespace(
            scaling_factor=manifest["scaling_factor"],
            block_out_channels=manifest["block_out_channels"],
            latent_channels=manifest["latent_channels"],
        )
        self.input_scale = manifest.get("vae_input_scale", 1.0)  # the graph multiplies by it: undo (export/onnx.py)

    def decode(self, latents):
        return SimpleNamespace(sample=self.run(latents.detach().float().cpu().numpy() / self.input_scale))


class OrtTextEncoder(_Session):
    def __init__(self, path: Path, providers: list[str], hidden_size: int):
        super().__init__(path, providers)
        self.config = SimpleNamespace(hidden_size=hidden_size)

    def __call__(self, input_ids):
        return SimpleNamespace(last_hidden_state=self.run(input_ids.cpu().numpy()))

    def get_input_embeddings(self):
        raise HifiError("Textual Inversion subjects need the torch backend (the ONNX text encoder is fixed)")


def load_onnx_components(folder: Path, providers: list[str] | None = None) -> SDComponents:
    from diffusers import DDIMScheduler

    folder = Path(folder).expanduser()
    if not (folder / MANIFEST).is_file():
        raise HifiError(f"{folder}: not an ONNX export (no {MANIFEST}); write one with `hifilight export onnx`")
    manifest = json.loads((folder / MANIFEST).read_text())
    providers = providers or ["CPUExecutionProvider"]
    scheduler = ddim_like_sd14(DDIMScheduler.from_pretrained(folder / "scheduler").config)
    return SDComponents(
        unet=OrtUNet(part_path(folder, "unet"), providers, manifest["in_channels"]),
        vae=OrtVaeDecoder(part_path(folder, "vae_decoder"), providers, manifest),
        text_encoder=OrtTextEncoder(part_path(folder, "text_encoder"), providers, manifest["text_hidden_size"]),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        scheduler=scheduler,
        name=manifest["base_model"],
    )
