"""DreamBooth-style LoRA (Hu et al. 2022, as diffusers' `train_dreambooth_lora.py` trains it): the base model stays
frozen and low-rank adapters on the UNet's attention projections (optionally the text encoder's) learn the subject,
with the identifier, class-prior preservation and, as HiFi Tuner's first technique, the optional masked loss (Eq. 5,
`--model.use_mask`); reference-guided generation applies at sampling time as for DreamBooth. UNet adapters only
(see below for the text encoder).

The output is one `.safetensors` in diffusers' LoRA layout (`unet.*` keys) that
`pipe.load_lora_weights` reads, with hifilight's metadata (identifier, class, base model) in its header: a few MB
where a DreamBooth subject is a copy of the UNet.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hifilight.errors import HifiError, check_numbers
from hifilight.subjects import LORA_FORMAT as FORMAT
from hifilight.training.dreambooth import DreamBoothModule
from hifilight.training.optim import adamw

FORMAT_VERSION = 1
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # diffusers' DreamBooth LoRA default


def _peft():
    try:
        import peft
    except ImportError:
        raise HifiError("--method lora needs peft: pip install 'hifilight[lora]' (or pip install peft)") from None
    return peft


class LoRAModule(DreamBoothModule):
    fit_method = "lora"

    def __init__(
        self,
        pretrained: str = "tiny",
        identifier: str = "sks",
        learning_rate: float = 1e-4,
        max_steps: int = 400,
        rank: int = 4,
        alpha: float | None = None,
        target_modules: list[str] | None = None,
        dropout: float = 0.0,
        prior_preservation: bool = True,
        prior_loss_weight: float = 1.0,
        num_class_images: int = 200,
        class_dir: Path | None = None,
        class_prompt: str | None = None,
        class_steps: int = 50,
        class_guidance: float = 7.5,
        use_mask: bool = False,
        seed: int = 0,
        gradient_checkpointing: bool = False,
    ):
        """LoRA adapters for the subject (DreamBooth-style).

        Args:
            pretrained: base model: "tiny", "toysd", a local diffusers pipeline folder, or a hub id.
            identifier: the rare word that names the subject in prompts ("a sks dog on the beach").
            learning_rate: AdamW learning rate (diffusers' DreamBooth LoRA example: 1e-4).
            max_steps: optimizer steps; --trainer.max_steps follows it.
            rank: LoRA rank r.
            alpha: LoRA alpha (the update is scaled by alpha / r; default: r, i.e. scale 1).
            target_modules: UNet modules that get adapters (default: the attention projections to_q, to_k, to_v,
                to_out.0).
            dropout: LoRA dropout.
            prior_preservation: add the class-prior loss with generated class images.
            prior_loss_weight: weight of the class-prior loss.
            num_class_images: class images to have in class_dir (missing ones are generated once, then reused).
            class_dir: folder of class images (default: <trainer.default_root_dir>/class_images/<base weights'
                fingerprint>/<class>, so two base models never share class images).
            class_prompt: prompt of the class images (default "a photo of a <class>").
            class_steps: DDIM steps to generate class images.
            class_guidance: guidance weight to generate class images.
            use_mask: multiply the instance loss by the subject mask (Eq. 5; needs --data.masks).
            seed: seed of the class images and of the per-sample draws.
            gradient_checkpointing: recompute UNet activations in the backward pass (less memory, more time).
        """
        check_numbers(
            ("--model.rank", rank, ">= 1"), ("--model.alpha", alpha, "> 0"), ("--model.dropout", dropout, "in [0, 1)")
        )
        peft = _peft()
        super().__init__(
            pretrained=pretrained,
            identifier=identifier,
            learning_rate=learning_rate,
            weight_decay=0.0,
            max_steps=max_steps,
            train_text_encoder=False,
            prior_preservation=prior_preservation,
            prior_loss_weight=prior_loss_weight,
            num_class_images=num_class_images,
            class_dir=class_dir,
            class_prompt=class_prompt,
            class_steps=class_steps,
            class_guidance=class_guidance,
            use_mask=use_mask,
            seed=seed,
            gradient_checkpointing=gradient_checkpointing,
        )
        self.save_hyperparameters()  # this module's own arguments (rank, alpha, ...), then DreamBooth's fixed ones
        self.hparams.update(train_text_encoder=False, weight_decay=0.0, dtype="float32", attention="sdpa")
        # UNet adapters only: text-encoder adapters load through transformers' PEFT integration, which needs
        # peft >= 0.22 with transformers 5.x, and the newest peft on the registry here is 0.21.2.
        self.unet.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        config = {"r": rank, "lora_alpha": alpha or rank, "lora_dropout": dropout, "init_lora_weights": "gaussian"}
        try:
            self.unet.add_adapter(peft.LoraConfig(**config, target_modules=list(target_modules or UNET_TARGETS)))
        except ValueError as err:
            raise HifiError(f"--model.target_modules {target_modules}: {err}") from None

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for m in (self.unet, self.text_encoder) for p in m.parameters() if p.requires_grad]

    def configure_optimizers(self):
        return adamw(self.trainable(), self.hparams.learning_rate, 0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if "lora_" in k}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # a resumed fit holds only the adapters; the frozen base comes from --model.pretrained
        missing = {k: v for k, v in self.state_dict().items() if k not in checkpoint["state_dict"]}
        checkpoint["state_dict"] = {**missing, **checkpoint["state_dict"]}

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapters in diffusers' LoRA layout, as `StableDiffusionPipeline.save_lora_weights` writes them."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        return {f"unet.{k}": v.detach().float().cpu().contiguous() for k, v in state.items()}

    def save_outputs(self, datamodule, out, overwrite: bool) -> str:
        from safetensors.torch import save_file

        from hifilight.io import write_atomic

        h = self.hparams
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": "lora",
            "base_model": self.base_model,
            "identifier": h.identifier,
            "class_name": self.class_name,
            "resolution": self.resolution,
            "rank": h.rank,
            "alpha": h.alpha or h.rank,
            "training": {k: str(v) if isinstance(v, Path) else v for k, v in h.items()}
            | {"global_step": int(self.global_step)},
        }
        state = self.lora_state_dict()
        header = {"format": "pt", "hifilight": json.dumps(meta)}
        write_atomic(Path(out), lambda tmp: save_file(state, str(tmp), metadata=header), overwrite=overwrite)
        size = Path(out).stat().st_size / 2**20
        return (
            f"wrote LoRA subject {out} ({size:.1f} MB, rank {h.rank}; prompt with '{h.identifier} "
            f"{self.class_name}'; diffusers: pipe.load_lora_weights)"
        )
