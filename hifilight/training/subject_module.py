"""Stage 1 of HiFi Tuner: learn the subject embedding c_s with Eq. (6) (Sec. 3.2).

Only c_s (n x d) is trained. The UNet, VAE and text encoder are frozen; captions and the null text are encoded
once and cached (the text encoder is never in the backward graph), VAE latents are cached per (image, flip) when
the data module's crops are deterministic, so a training step costs one UNet forward + backward.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch import Tensor

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import check_room, encode_text, null_tail, splice_subject
from hifilight.errors import HifiError
from hifilight.models import load_components
from hifilight.sampling.ddim import add_noise, encode_images, training_target
from hifilight.training.losses import embedding_regularizer, latent_mask, masked_mse

FROZEN = ("unet", "vae", "text_encoder")


class SubjectEmbeddingModule(L.LightningModule):
    def __init__(
        self,
        pretrained: str = "tiny",
        dtype: Literal["float32", "float16", "bfloat16"] = "float32",
        num_tokens: int = 5,
        learning_rate: float = 5e-3,
        reg_weight: float = 0.01,
        use_mask: bool = True,
        use_regularizer: bool = True,
        loss_normalization: Literal["mask", "all"] = "mask",
    ):
        """Learn a subject embedding c_s (Eq. 6).

        Args:
            pretrained: base model: "tiny" (built-in random weights, for trying things out), a local diffusers
                pipeline folder, or a hub id such as CompVis/stable-diffusion-v1-4.
            dtype: dtype of the frozen models (c_s itself is always float32).
            num_tokens: n, the number of subject vectors spliced into the last n rows (paper: 5).
            learning_rate: Adam learning rate for c_s (paper: 5e-3).
            reg_weight: w_s of Eq. (6). The paper does not give its value; 0.01 is our untuned default.
            use_mask: multiply the diffusion loss by the subject mask (Eq. 5); false = Eq. (2) (ablation).
            use_regularizer: add w_s * ||c_s - phi_s||^2 (Eq. 6); false drops it (ablation).
            loss_normalization: "mask" = mean over subject elements (default), "all" = mean over all elements.
        """
        super().__init__()
        if learning_rate <= 0:
            raise HifiError(f"--model.learning_rate must be > 0, got {learning_rate}")
        if reg_weight < 0:
            raise HifiError(f"--model.reg_weight must be >= 0, got {reg_weight}")
        self.save_hyperparameters()
        comps = load_components(pretrained, dtype)
        self.unet, self.vae, self.text_encoder = comps.unet, comps.vae, comps.text_encoder
        self.tokenizer, self.scheduler, self.base_model = comps.tokenizer, comps.scheduler, comps.name
        self.is_random_weights = comps.is_random
        self.register_buffer("phi", encode_text(self.tokenizer, self.text_encoder, [""]).float(), persistent=False)
        phi_s = null_tail(self.phi, num_tokens)
        self.register_buffer("phi_s", phi_s, persistent=False)
        self.c_s = torch.nn.Parameter(phi_s.clone())  # Sec. 3.2: initialised from phi_s
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.float().clone(), persistent=False)
        self._caption_cache: dict[str, Tensor] = {}
        self._latent_cache: dict[str, Tensor] = {}
        self.strict_loading = False  # checkpoints hold c_s only (see on_save_checkpoint)

    # --- cached constants ---------------------------------------------------------------------------------
    def encode_captions(self, captions: list[str]) -> Tensor:
        """c for each caption, encoded once per distinct caption."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._caption_cache]
        for caption in missing:
            check_room(self.tokenizer, caption, self.hparams.num_tokens)
        if missing:
            encoded = encode_text(self.tokenizer, self.text_encoder, missing).float()
            self._caption_cache.update(zip(missing, encoded, strict=True))
        return torch.stack([self._caption_cache[c] for c in captions])

    def encode_latents(self, pixels: Tensor, masks: Tensor, keys: list[str]) -> tuple[Tensor, Tensor]:
        """x_0 = E(I) and M at latent size, cached by the data module's cache key ("" = not cacheable)."""
        todo = [i for i, k in enumerate(keys) if not k or k not in self._latent_cache]
        fresh = {}
        if todo:
            latents = encode_images(self.vae, pixels[todo]).float()
            small = latent_mask(masks[todo], tuple(latents.shape[-2:]))
            fresh = {i: (lat, m) for i, lat, m in zip(todo, latents, small, strict=True)}
            self._latent_cache.update({keys[i]: fresh[i] for i in todo if keys[i]})
        pairs = [fresh[i] if i in fresh else self._latent_cache[k] for i, k in enumerate(keys)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    # --- Eq. (6) ------------------------------------------------------------------------------------------
    def stage1_loss(
        self, latents: Tensor, mask: Tensor | None, c: Tensor, timesteps: Tensor, noise: Tensor
    ) -> dict[str, Tensor]:
        """L_s(c_s) of Eq. (6) for given x_0, M, c, t and eps; returns the total and its two terms."""
        x_t = add_noise(latents, noise, timesteps, self.alphas_cumprod)
        cond = splice_subject(c, self.c_s)  # [c, c_s]
        pred = self.unet(x_t.to(self.unet.dtype), timesteps, encoder_hidden_states=cond.to(self.unet.dtype)).sample
        target = training_target(latents, noise, timesteps, self.alphas_cumprod, self.scheduler.config.prediction_type)
        diffusion = masked_mse(pred, target, mask if self.hparams.use_mask else None, self.hparams.loss_normalization)
        reg = embedding_regularizer(self.c_s, self.phi_s)
        total = diffusion + self.hparams.reg_weight * reg if self.hparams.use_regularizer else diffusion
        return {"loss": total, "diffusion": diffusion, "reg": reg}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        latents, mask = self.encode_latents(batch["pixels"], batch["mask"], list(batch["cache_key"]))
        c = self.encode_captions(list(batch["caption"]))
        # Stage 1 trains one c_s for all timesteps: t uniform over the training timesteps (as Textual Inversion).
        t = torch.randint(0, len(self.alphas_cumprod), (latents.shape[0],), device=latents.device)
        out = self.stage1_loss(latents, mask, c, t, torch.randn_like(latents))
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, prog_bar=True, on_step=True)
        return out["loss"]

    def configure_optimizers(self):
        return torch.optim.Adam([self.c_s], lr=self.hparams.learning_rate)

    # --- checkpoints hold only what is trained ------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(FROZEN)}

    def to_artifact(self, class_name: str, caption_templates: list[str], resolution: int) -> SubjectArtifact:
        meta = {
            "resolution": resolution,
            "base_model": self.base_model,
            "class_name": class_name,
            "caption_templates": caption_templates,
            "scheduler": {k: v for k, v in self.scheduler.config.items() if not k.startswith("_")},
            "training": {k: v for k, v in self.hparams.items() if not k.startswith("_")}
            | {"global_step": int(self.global_step)},
        }
        return SubjectArtifact(c_s=self.c_s.detach().float().cpu(), phi_s=self.phi_s.cpu(), metadata=meta)
