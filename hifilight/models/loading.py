"""Load Stable Diffusion components from a hub id, a local folder, or the built-in `tiny` preset.

This is the only place that loads diffusion weights: training, sampling and tests all go through it, so the
`tiny` preset and a real checkpoint exercise the same code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from hifilight import plugins
from hifilight.errors import HifiError
from hifilight.models.tiny import PRESETS

TINY = "tiny"
TOYSD = "toysd"  # ToyWorld's Stable Diffusion, trained here (hifilight/assets/toyworld/toysd)


class _NoTorchvisionNotice(logging.Filter):
    """transformers notes at every load that image processors fall back without torchvision; we use none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class SDComponents:
    """The frozen parts of a Stable Diffusion pipeline plus the name they were loaded from."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    name: str

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def text_hidden_size(self) -> int:
        return self.text_encoder.config.hidden_size

    @property
    def is_random(self) -> bool:
        return self.name in PRESETS

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}

    def fingerprint(self) -> str:
        """The first 16 hex digits of a SHA-256 over every weight (UNet, VAE, text encoder(s), names in order, as
        float32 on the CPU): which weights made a table, so a record made on earlier weights says so."""
        digest = hashlib.sha256()
        for part, module in self.modules().items():
            for key, value in sorted(module.state_dict().items()):
                digest.update(f"{part}.{key}".encode())
                digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def ddim_like_sd14(scheduler_config: dict) -> DDIMScheduler:
    """A DDIM scheduler with the model's betas and prediction type, set up as in SD v1.4 sampling (paper Sec. 4)."""
    return DDIMScheduler.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _from_pretrained(source: str, local: bool) -> dict:
    kwargs = {"local_files_only": True} if local else {}
    if _is_sdxl_pipeline(source, local):
        from hifilight.models.sdxl import load_sdxl_parts

        return load_sdxl_parts(source, kwargs)
    return {
        "unet": UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs),
        "vae": AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs),
        "text_encoder": CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs),
        "tokenizer": CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs),
        "scheduler": DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs),
    }


def _is_sdxl_pipeline(source: str, local: bool) -> bool:
    """An SDXL pipeline has a second text encoder (model_index.json's `text_encoder_2`)."""
    if local:
        return (Path(source) / "text_encoder_2").is_dir()
    from huggingface_hub import hf_hub_download

    return "text_encoder_2" in json.loads(Path(hf_hub_download(source, "model_index.json")).read_text())


def resolve_source(source: str, flag: str, required_subfolder: str | None = None) -> tuple[str, bool]:
    """(source, is_local) for a local folder or a hub id; anything else is a one-line error naming `flag`."""
    path = Path(source).expanduser()
    if path.is_dir():
        if required_subfolder and not (path / required_subfolder).is_dir():
            raise HifiError(
                f"{flag} {source}: folder has no {required_subfolder}/ subfolder; pass a diffusers pipeline folder "
                "(as written by StableDiffusionPipeline.save_pretrained) or a hub id"
            )
        return str(path), True
    if path.exists() or not _HUB_ID.match(source):
        raise HifiError(f"{flag} {source}: no such folder and not a hub id; pass a local model folder or a hub id")
    return source, False


def load_failure(flag: str, source: str, err: OSError) -> HifiError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return HifiError(
        f"{flag} {source}: could not load ({first}); check the id or download the model to a local folder and pass "
        "its path"
    )


def load_components(
    pretrained: str = TINY, dtype: str = "float32", device: str | torch.device = "cpu", flag: str = "--model.pretrained"
) -> SDComponents:
    """Return frozen, eval-mode SD components.

    Args:
        pretrained: a built-in random-weight preset (``"tiny"``, ``"tiny-quarter"``, ``"tiny-xl"``), a registered name
            (``"toysd"``: the ToyWorld model shipped in the package; see hifilight.plugins), a local diffusers
            pipeline folder, or a hub id.
        dtype: one of float32, float16, bfloat16.
        device: where to put the modules.
        flag: how an error names where `pretrained` came from (a subject's header, when the user passed no flag).
    """
    if dtype not in DTYPES:
        raise HifiError(f"--model.dtype {dtype}: unknown dtype; use one of {', '.join(DTYPES)}")
    if pretrained in PRESETS:
        parts = PRESETS[pretrained]()
    else:
        registered = plugins.base_model(pretrained)  # e.g. "toysd", registered by ToyWorld
        folder = registered() if registered is not None else pretrained
        source, local = resolve_source(folder, flag, required_subfolder="unet")
        try:
            parts = _from_pretrained(source, local)
        except OSError as err:  # missing files, hub unreachable, gated repo ...
            raise load_failure(flag, pretrained, err) from err
    parts["scheduler"] = ddim_like_sd14(parts["scheduler"].config)
    comps = SDComponents(name=pretrained, **parts)
    if hasattr(comps.unet, "vae_scale_factor"):  # SDXL's time ids are in pixels
        comps.unet.vae_scale_factor = comps.vae_scale_factor
    for module in comps.modules().values():
        module.requires_grad_(False)
        module.eval()
        if module.dtype != DTYPES[dtype]:
            module.to(dtype=DTYPES[dtype])
        module.to(device=device)
    return comps


RANDOM_WEIGHTS_NOTE = (
    "NOTE: built-in model preset has random weights: it proves the code path, its images are not meaningful. "
    "For real results add --model.pretrained CompVis/stable-diffusion-v1-4 (hub id or local folder)."
)


def note_random_weights(pretrained: str) -> None:
    if pretrained in PRESETS:
        print(RANDOM_WEIGHTS_NOTE, file=sys.stderr)
