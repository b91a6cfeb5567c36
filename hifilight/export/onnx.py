"""ONNX export of the networks a sampler needs, in the folder layout diffusers' `OnnxStableDiffusionPipeline` and
Optimum read, with an onnxruntime parity check.

- `unet/model.onnx`: (sample, timestep, encoder_hidden_states) -> out_sample (noise or v). The conditioning is an
  input, so [c, c_s] and the per-step c_s^t (Eq. 7) go in unchanged; batch and latent size are dynamic.
- `vae_decoder/model.onnx`: latent_sample -> sample (the image in [-1, 1]).
- `vae_encoder/model.onnx`: sample (an image in [-1, 1]) -> latent_sample, the posterior mean (deterministic; the
  diffusers converter draws a sample inside the graph).
- `text_encoder/model.onnx`: input_ids (int32, as diffusers feeds them) -> last_hidden_state, pooler_output.
- `tokenizer/`, `scheduler/`, `model_index.json` (diffusers), `hifilight_onnx.json` (what hifilight's sampler needs).

diffusers' ONNX pipelines hard-code SD's VAE scale 0.18215; a model with another `scaling_factor` (ToySD) gets the
ratio folded into its VAE graphs, so the same folder decodes right in diffusers and in hifilight (which undoes the
fold, `vae_input_scale` in the manifest). Uses the TorchScript exporter (dynamo=False, opset 17).
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
WEIGHTS = "model.onnx"
DIFFUSERS_VAE_SCALE = 0.18215  # what OnnxStableDiffusionPipeline multiplies and divides by


class _UNet(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


class _VaeDecoder(nn.Module):
    """decode(latent_sample * fold): with fold = 0.18215 / scaling_factor, diffusers' latents / 0.18215 come in as
    the model's latents / scaling_factor."""

    def __init__(self, vae, fold: float):
        super().__init__()
        self.vae, self.fold = vae, fold

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample * self.fold).sample


class _VaeEncoder(nn.Module):
    """The posterior mean / fold: diffusers multiplies it by 0.18215, which gives mean * scaling_factor."""

    def __init__(self, vae, fold: float):
        super().__init__()
        self.vae, self.fold = vae, fold

    def forward(self, sample):
        return self.vae.encode(sample).latent_dist.mean / self.fold


class _TextEncoder(nn.Module):
    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        out = self.text_encoder(input_ids.long())
        return out.last_hidden_state, out.pooler_output


def _example_inputs(comps, batch: int = 2, latent: int = 8) -> dict[str, tuple]:
    g = torch.Generator().manual_seed(0)
    channels = comps.unet.config.in_channels
    ids = torch.randint(0, len(comps.tokenizer), (batch, comps.tokenizer.model_max_length), generator=g)
    return {
        "unet": (
            torch.randn(batch, channels, latent, latent, generator=g),
            torch.tensor([500] * batch),
            torch.randn(batch, comps.tokenizer.model_max_length, comps.text_hidden_size, generator=g),
        ),
        "vae_decoder": (torch.randn(batch, comps.vae.config.latent_channels, latent, latent, generator=g),),
        "vae_encoder": (torch.rand(batch, 3, 8 * latent, 8 * latent, generator=g) * 2 - 1,),
        "text_encoder": (ids.int(),),
    }


SPECS = {
    "unet": (["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
             {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
              "encoder_hidden_states": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}),
    "vae_decoder": (["latent_sample"], ["sample"], {"latent_sample": {0: "batch", 2: "height", 3: "width"},
                                                    "sample": {0: "batch", 2: "height", 3: "width"}}),
    "vae_encoder": (["sample"], ["latent_sample"], {"sample": {0: "batch", 2: "height", 3: "width"},
                                                    "latent_sample": {0: "batch", 2: "height", 3: "width"}}),
    "text_encoder": (["input_ids"], ["last_hidden_state", "pooler_output"],
                     {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}}),
}  # fmt: skip


def model_index(comps) -> dict:
    """diffusers' model_index.json for OnnxStableDiffusionPipeline (no safety checker: hifilight ships none)."""
    import diffusers

    ort = ["diffusers", "OnnxRuntimeModel"]
    return {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "vae_encoder": ort,
        "vae_decoder": ort,
        "text_encoder": ort,
        "unet": ort,
        "tokenizer": ["transformers", type(comps.tokenizer).__name__],
        "scheduler": ["diffusers", type(comps.scheduler).__name__],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }


def export_onnx(comps, out: Path, overwrite: bool = False, check: bool = True) -> dict[str, float]:
    """Write the folder (atomically: built in a temporary folder, then renamed); return max |onnx - torch| per part
    on fresh inputs of another batch size and latent size than the export's (when `check`)."""
    diffs: dict[str, float] = {}

    fold = DIFFUSERS_VAE_SCALE / comps.vae.config.scaling_factor

    def write(tmp: Path) -> None:
        wrappers = {
            "unet": _UNet(comps.unet),
            "vae_decoder": _VaeDecoder(comps.vae, fold),
            "vae_encoder": _VaeEncoder(comps.vae, fold),
            "text_encoder": _TextEncoder(comps.text_encoder),
        }
        examples = _example_inputs(comps)
        for name, module in wrappers.items():
            inputs, outputs, axes = SPECS[name]
            (tmp / name).mkdir()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
                torch.onnx.export(
                    module.float().eval(),
                    examples[name],
                    str(tmp / name / WEIGHTS),
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
        comps.tokenizer.save_pretrained(tmp / "tokenizer")
        comps.scheduler.save_pretrained(tmp / "scheduler")
        manifest = {
            "base_model": comps.name,
            "in_channels": comps.unet.config.in_channels,
            "latent_channels": comps.vae.config.latent_channels,
            "scaling_factor": comps.vae.config.scaling_factor,
            "block_out_channels": list(comps.vae.config.block_out_channels),
            "text_hidden_size": comps.text_hidden_size,
            "opset": OPSET,
            "vae_input_scale": fold,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        (tmp / "model_index.json").write_text(json.dumps(model_index(comps), indent=2))
        if check:
            diffs.update(parity(tmp, wrappers, _example_inputs(comps, batch=1, latent=16)))

    write_folder_atomic(Path(out), write, overwrite)
    return diffs


@torch.no_grad()
def parity(folder: Path, wrappers: dict, examples: dict) -> dict[str, float]:
    import onnxruntime as ort

    diffs = {}
    for name, module in wrappers.items():
        session = ort.InferenceSession(str(folder / name / WEIGHTS), providers=["CPUExecutionProvider"])
        feeds = {i.name: x.numpy() for i, x in zip(session.get_inputs(), examples[name], strict=True)}
        got = session.run(None, feeds)[0]
        want = module(*examples[name])
        want = (want[0] if isinstance(want, tuple) else want).numpy()
        diffs[name] = float(np.abs(got - want).max())
    return diffs
