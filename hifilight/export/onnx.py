"""ONNX export of the three networks a sampler needs, with an onnxruntime parity check.

- `unet.onnx`: (sample, timestep, encoder_hidden_states) -> noise (or v) prediction. The conditioning is an input,
  so [c, c_s] and the per-step c_s^t (Eq. 7) work unchanged; batch and latent size are dynamic.
- `vae_decoder.onnx`: scaled-back latents -> image in [-1, 1]; batch and size dynamic.
- `text_encoder.onnx`: token ids (batch, 77) -> last hidden states; batch dynamic.

Next to them: `tokenizer/`, `scheduler/` (configs) and `hifilight_onnx.json` (what the sampler needs to know), so
the folder alone is enough to generate (`hifilight.export.ort`). Uses the TorchScript exporter (dynamo=False,
opset 17), which handles diffusers' UNet.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifilight.io import write_folder_atomic

OPSET = 17
MANIFEST = "hifilight_onnx.json"


class _UNet(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


class _VaeDecoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents).sample


class _TextEncoder(nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        return self.text_encoder(input_ids).last_hidden_state


def _example_inputs(comps, batch: int = 2, latent: int = 8) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(0)
    channels = comps.unet.config.in_channels
    ids = torch.randint(0, len(comps.tokenizer), (batch, comps.tokenizer.model_max_length), generator=g)
    return {
        "unet": (torch.randn(batch, channels, latent, latent, generator=g), torch.tensor([500] * batch),
                 torch.randn(batch, comps.tokenizer.model_max_length, comps.text_hidden_size, generator=g)),
        "vae_decoder": (torch.randn(batch, comps.vae.config.latent_channels, latent, latent, generator=g),),
        "text_encoder": (ids,),
    }  # fmt: skip


SPECS = {
    "unet": (["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
             {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
              "encoder_hidden_states": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}),
    "vae_decoder": (["latents"], ["image"], {"latents": {0: "batch", 2: "height", 3: "width"},
                                              "image": {0: "batch", 2: "height", 3: "width"}}),
    "text_encoder": (["input_ids"], ["last_hidden_state"], {"input_ids": {0: "batch"},
                                                            "last_hidden_state": {0: "batch"}}),
}  # fmt: skip


def export_onnx(comps, out: Path, overwrite: bool = False, check: bool = True) -> dict[str, float]:
    """Write the folder (atomically: built in a temporary folder, then renamed); return max |onnx - torch| per part
    on fresh inputs of another batch size and latent size than the export's (when `check`)."""
    diffs: dict[str, float] = {}

    def write(tmp: Path) -> None:
        wrappers = {"unet": _UNet(comps.unet), "vae_decoder": _VaeDecoder(comps.vae),
                    "text_encoder": _TextEncoder(comps.text_encoder)}  # fmt: skip
        examples = _example_inputs(comps)
        for name, module in wrappers.items():
            inputs, outputs, axes = SPECS[name]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
                torch.onnx.export(module.float().eval(), examples[name], str(tmp / f"{name}.onnx"),
                                  input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=OPSET,
                                  dynamo=False)  # fmt: skip
        comps.tokenizer.save_pretrained(tmp / "tokenizer")
        comps.scheduler.save_pretrained(tmp / "scheduler")
        manifest = {"base_model": comps.name, "in_channels": comps.unet.config.in_channels,
                    "latent_channels": comps.vae.config.latent_channels,
                    "scaling_factor": comps.vae.config.scaling_factor,
                    "block_out_channels": list(comps.vae.config.block_out_channels),
                    "text_hidden_size": comps.text_hidden_size, "opset": OPSET}  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if check:
            diffs.update(parity(tmp, wrappers, _example_inputs(comps, batch=1, latent=16)))

    write_folder_atomic(Path(out), write, overwrite)
    return diffs


@torch.no_grad()
def parity(folder: Path, wrappers: dict, examples: dict) -> dict[str, float]:
    import onnxruntime as ort

    diffs = {}
    for name, module in wrappers.items():
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), examples[name], strict=True)}
        got = session.run(None, feeds)[0]
        want = module(*examples[name]).numpy()
        diffs[name] = float(np.abs(got - want).max())
    return diffs
