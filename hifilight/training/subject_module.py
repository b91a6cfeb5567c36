"""HiFi Tuner's subject representations (Sec. 3.2): c_s with Eq. (6), then step-wise c_s^t (Algorithm 1).

Stage 1 trains c_s (n x d) for `stage1_steps` steps. The step-wise stage then walks the DDIM timesteps from T down
to 1: c_s^t starts from c_s^{t+1} (c_s^{T+1} = c_s) and is optimised for I steps on Eq. (6) with x_t noised at
exactly t. Both stages run in one Lightning fit; the global step says which stage and timestep a step belongs to
(see `StepwisePlan`), so checkpoints resume at the right place.

The UNet, VAE and text encoder are frozen; captions and the null text are encoded once and cached (the text
encoder is never in the backward graph), VAE latents are cached per (image, flip) when the data module's crops
are deterministic, so a training step costs one UNet forward + backward.
"""

from __future__ import annotations

import sys
from typing import Literal

import lightning as L
import torch
from torch import Tensor

from hifilight.artifacts import SubjectArtifact
from hifilight.conditioning import check_room, encode_text, null_tail, splice_subject
from hifilight.data.datamodule import SubjectDataModule
from hifilight.data.draws import noise_and_timesteps, sample_generator
from hifilight.errors import HifiError, check_numbers
from hifilight.masking import MaskRule
from hifilight.models.sdxl import architecture
from hifilight.sampling.ddim import DDIMSchedule
from hifilight.training.latents import LatentCache
from hifilight.training.losses import denoising_loss, embedding_regularizer
from hifilight.training.stepwise import StepwisePlan, total_steps
from hifilight.training.unet_options import attach_components

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
        mask_rule: MaskRule = "area",
        use_regularizer: bool = True,
        loss_normalization: Literal["mask", "all"] = "mask",
        stage1_steps: int = 1000,
        stepwise_steps: int = 10,
        stepwise_num_steps: int = 50,
        stepwise_learning_rate: float = 5e-3,
        stepwise_reset_optimizer: bool = True,
        drift_warn_below: float = 0.01,
        drift_warn_above: float = 1.0,
        seed: int = 0,
        gradient_checkpointing: bool = False,
        attention: Literal["sdpa", "classic"] = "sdpa",
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
            mask_rule: how the photo's mask becomes the latent M (the paper leaves it open): "area" (cells at
                least half subject), "touched" (every cell the subject touches) or "soft" (each cell weighted by
                its subject share); see hifilight.masking.
            use_regularizer: add w_s * ||c_s - phi_s||^2 (Eq. 6); false drops it (ablation).
            loss_normalization: "mask" = mean over subject elements (default), "all" = mean over all elements.
            stage1_steps: optimizer steps of stage 1 (paper: 1000). The fit CLI sets --trainer.max_steps from this
                and the step-wise settings.
            stepwise_steps: I, optimizer steps per DDIM timestep in the step-wise stage (Algorithm 1; paper: 10);
                0 skips the stage (the artifact then holds c_s only).
            stepwise_num_steps: T, the DDIM steps the step-wise embeddings are trained for (paper: 50); sample with
                the same number.
            stepwise_learning_rate: Adam learning rate of the step-wise stage (paper: 5e-3).
            stepwise_reset_optimizer: start every timestep with a fresh Adam state (true), or carry the moments
                over from the previous timestep (false). The paper does not say; a fresh state per timestep
                matches null-text inversion's per-step optimiser.
            drift_warn_below: at the end of the fit, warn when ||c_s - phi_s|| / ||phi_s|| is below this (the
                regulariser pinned c_s: the subject cannot show; lower --model.reg_weight). On ToySD w_s = 0.01 held
                c_s at 0.0014, w_s = 1e-4 let it reach 0.12.
            drift_warn_above: warn when the relative drift is above this (c_s grew past phi_s and will override
                prompts; raise --model.reg_weight or lower --model.learning_rate).
            gradient_checkpointing: recompute UNet activations in the backward pass (less memory, more time).
            attention: UNet attention: "sdpa" (default) or "classic".
            seed: seed of the step-wise stage's draws (source image, caption, noise), which depend only on
                (seed, step) so that a resumed run continues exactly.
        """
        super().__init__()
        check_numbers(
            ("--model.learning_rate", learning_rate, "> 0"),
            ("--model.reg_weight", reg_weight, ">= 0"),
            ("--model.stage1_steps", stage1_steps, ">= 0"),
            ("--model.stepwise_steps", stepwise_steps, ">= 0"),
            ("--model.stepwise_num_steps", stepwise_num_steps, ">= 1"),
        )
        if stage1_steps + stepwise_steps == 0:
            raise HifiError(
                "--model.stage1_steps and --model.stepwise_steps are both 0: nothing would be trained; "
                "set --model.stage1_steps (paper: 1000)"
            )
        self.save_hyperparameters()
        attach_components(self, pretrained, dtype, gradient_checkpointing, attention)
        self.register_buffer("phi", encode_text(self.tokenizer, self.text_encoder, [""]).float(), persistent=False)
        phi_s = null_tail(self.phi, num_tokens)
        self.register_buffer("phi_s", phi_s, persistent=False)
        self.c_s = torch.nn.Parameter(phi_s.clone())  # Sec. 3.2: initialised from phi_s
        timesteps = DDIMSchedule.from_scheduler(self.scheduler, stepwise_num_steps).timesteps
        self.plan = StepwisePlan(stage1_steps, stepwise_steps, tuple(timesteps.tolist()))
        # Algorithm 1: c_work is the c_s^t being optimised; c_s_t[k] holds the result for timesteps[k].
        self.c_work = torch.nn.Parameter(phi_s.clone())
        self.register_buffer("c_s_t", phi_s.expand(len(timesteps), -1, -1).clone())
        self.register_buffer("stepwise_timesteps", timesteps.clone())
        self._caption_cache: dict[str, Tensor] = {}
        self._latent_cache = LatentCache(mask_rule)
        self._views: list[dict] | None = None
        self.strict_loading = False  # checkpoints hold only the trained tensors (see on_save_checkpoint)

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
        return self._latent_cache(self.vae, pixels, masks, keys)

    # --- Eq. (6) ------------------------------------------------------------------------------------------
    def subject_loss(
        self, c_s: Tensor, latents: Tensor, mask: Tensor | None, c: Tensor, timesteps: Tensor, noise: Tensor
    ) -> dict[str, Tensor]:
        """L_s of Eq. (6) for the embedding `c_s` given x_0, M, c, t and eps; returns the total and its terms."""
        diffusion = denoising_loss(  # Eq. (5) on N_s(x_0, eps, t) given [c, c_s]
            self.unet, latents, noise, timesteps, splice_subject(c, c_s), self.alphas_cumprod,
            self.scheduler.config.prediction_type, mask if self.hparams.use_mask else None,
            self.hparams.loss_normalization,
        )  # fmt: skip
        reg = embedding_regularizer(c_s, self.phi_s)
        total = diffusion + self.hparams.reg_weight * reg if self.hparams.use_regularizer else diffusion
        return {"loss": total, "diffusion": diffusion, "reg": reg}

    def setup(self, stage: str) -> None:
        """The step-wise stage draws its views from X_0 (`stepwise_step`), so the loader's batches after stage 1
        carry only sample ids: no image is cropped, resized and collated for nothing."""
        trainer = self._trainer
        dm = trainer.datamodule if trainer is not None else None
        if self.plan.enabled and isinstance(dm, SubjectDataModule):
            per_step = trainer.accumulate_grad_batches * trainer.world_size * dm.batch_size
            dm.index_only_from = self.plan.stage1_steps * per_step

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        where = self.plan.locate(self.global_step)
        if where is None:
            out = self.stage1_step(batch)
            self.log_terms("train", out)
        else:
            dm = self.trainer.datamodule
            out = self.stepwise_step(where, self.source_views(dm), dm.captions, len(batch["caption"]))
            self.log_terms("stepwise", out, timestep=float(self.plan.timesteps[where[0]]))
        return out["loss"]

    def log_terms(self, prefix: str, out: dict[str, Tensor], **extra: float) -> None:
        """Log on the steps Lightning writes logs (every --trainer.log_every_n_steps) only: each `self.log` call
        costs about a millisecond, which is a visible share of a small model's step."""
        trainer = self._trainer
        if trainer is None or not trainer.log_every_n_steps or (self.global_step + 1) % trainer.log_every_n_steps:
            return
        values = {f"{prefix}/{k}": v.detach() for k, v in out.items()} | {f"{prefix}/{k}": v for k, v in extra.items()}
        drift = self.drift()
        values |= {f"{prefix}/drift": drift["c_s"], f"{prefix}/drift_rel": drift["c_s_rel"]}
        self.log_dict(values, prog_bar=True, on_step=True)

    def stage1_step(self, batch: dict) -> dict[str, Tensor]:
        latents, mask = self.encode_latents(batch["pixels"], batch["mask"], list(batch["cache_key"]))
        c = self.encode_captions(list(batch["caption"]))
        # Stage 1 trains one c_s for all timesteps: t uniform over the training timesteps (as Textual Inversion),
        # drawn with the noise from the sample's own generator (see hifilight.data.draws).
        noise, t = noise_and_timesteps(
            self.hparams.seed,
            batch["sample_id"].tolist(),
            tuple(latents.shape[1:]),
            len(self.alphas_cumprod),
            latents.device,
        )
        return self.subject_loss(self.c_s, latents, mask, c, t, noise.to(latents.dtype))

    def source_views(self, datamodule) -> list[dict]:
        if self._views is None:
            self._views = datamodule.fixed_views()
        return self._views

    def stepwise_step(self, where: tuple[int, int], views: list[dict], captions: list[str], batch_size: int):
        """One inner step i of Algorithm 1 at timestep index k: x_0 from X_0, fresh eps, x_t at exactly t."""
        k, i = where
        if i == 0:  # c_s^t = c_s^{t+1}, with c_s^{T+1} = c_s
            with torch.no_grad():
                self.c_work.copy_(self.c_s if k == 0 else self.c_s_t[k - 1])
        # sample i of this process is global sample (step * world + rank) * b + i (see hifilight.data.draws)
        world = self._trainer.world_size if self._trainer is not None else 1
        first = (self.global_step * world + self.global_rank) * batch_size
        gens = [sample_generator(self.hparams.seed, first + i, stream=3) for i in range(batch_size)]
        chosen = [views[int(torch.randint(len(views), (), generator=g))] for g in gens]
        texts = [captions[int(torch.randint(len(captions), (), generator=g))] for g in gens]
        pixels = torch.stack([v["pixels"] for v in chosen]).to(self.device)
        masks = torch.stack([v["mask"] for v in chosen]).to(self.device)
        latents, mask = self.encode_latents(pixels, masks, [v["cache_key"] for v in chosen])
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in gens]).to(latents.device)
        t = torch.full((batch_size,), self.plan.timesteps[k], device=latents.device, dtype=torch.long)
        return self.subject_loss(self.c_work, latents, mask, self.encode_captions(texts), t, noise)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.reset_stepwise_optimizer(optimizer, self.global_step)

    def reset_stepwise_optimizer(self, optimizer, global_step: int) -> None:
        """At the first inner step of a timestep, drop c_work's Adam state if --model.stepwise_reset_optimizer."""
        where = self.plan.locate(global_step)
        if where is not None and where[1] == 0 and self.hparams.stepwise_reset_optimizer:
            optimizer.state.pop(self.c_work, None)

    def progress_stage(self, global_step: int) -> str:
        """For the progress bar: "stage 1 120/1000" or "step-wise t=781 3/10" (training.progress)."""
        return self.plan.describe(global_step)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # global_step has already advanced past the step that just ran
        where = self.plan.locate(self.global_step - 1)
        if where is not None:
            with torch.no_grad():
                self.c_s_t[where[0]].copy_(self.c_work)

    # --- how far the embedding moved (Eq. 6's balance) ---------------------------------------------------------
    @torch.no_grad()
    def drift(self) -> dict[str, float]:
        """||c_s - phi_s|| (absolute and relative to ||phi_s||) and, once trained, the largest over the c_s^t."""
        norm = float(self.phi_s.norm())
        moved = float((self.c_s.float() - self.phi_s).norm())
        out = {"phi_s_norm": norm, "c_s": moved, "c_s_rel": moved / norm}
        if self.stepwise_done:
            step = float((self.c_s_t.float() - self.phi_s).flatten(1).norm(dim=1).max())
            out |= {"c_s_t_max": step, "c_s_t_max_rel": step / norm}
        return out

    def drift_warning(self) -> str | None:
        """One line when c_s barely moved or ran far past phi_s (see --model.drift_warn_below / _above)."""
        rel, hp = self.drift()["c_s_rel"], self.hparams
        if rel < hp.drift_warn_below:
            return (
                f"c_s moved only {rel:.4f} x ||phi_s|| from phi_s: the regulariser pins it and the subject may not "
                f"show; lower --model.reg_weight (now {hp.reg_weight:g}) or train longer"
            )
        if rel > hp.drift_warn_above:
            return (
                f"c_s moved {rel:.2f} x ||phi_s|| from phi_s: it may override the prompt; raise --model.reg_weight "
                f"(now {hp.reg_weight:g}) or lower --model.learning_rate"
            )
        return None

    def on_train_end(self) -> None:
        message = self.drift_warning()
        if message and self.global_rank == 0:
            print(f"warning: {message}", file=sys.stderr)

    @property
    def stepwise_done(self) -> bool:
        return self.plan.enabled and self.global_step >= self.plan.total_steps

    def configure_optimizers(self):
        # Two groups: stage 1 updates c_s, the step-wise stage c_work; a parameter without a gradient is skipped.
        return torch.optim.Adam(
            [
                {"params": [self.c_s], "lr": self.hparams.learning_rate},
                {"params": [self.c_work], "lr": self.hparams.stepwise_learning_rate},
            ]
        )

    # --- checkpoints hold only what is trained ------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(FROZEN)}

    @staticmethod
    def link_arguments(parser) -> None:
        """Stage 1 + step-wise stage run as one fit: their lengths set --trainer.max_steps (see StepwisePlan)."""
        parser.link_arguments(
            ("model.stage1_steps", "model.stepwise_steps", "model.stepwise_num_steps"),
            "trainer.max_steps",
            compute_fn=total_steps,
        )

    def save_outputs(self, datamodule, out, overwrite: bool) -> str:
        dm = datamodule
        artifact = self.to_artifact(dm.class_name, dm.caption_templates, dm.resolution)
        path = artifact.save(out, overwrite=overwrite)
        kind = f"c_s and {len(artifact.timesteps)} step-wise c_s^t" if artifact.c_s_t is not None else "c_s only"
        return f"wrote subject artifact {path} ({kind})"

    def sample_subject(self, datamodule) -> tuple[SubjectArtifact, str, int]:
        """What a sample grid renders now: (the current artifact, the prompt word, DDIM steps: the step-wise T once
        the c_s^t exist)."""
        dm = datamodule
        art = self.to_artifact(dm.class_name, dm.caption_templates, dm.resolution)
        return art, dm.class_name, self.hparams.stepwise_num_steps if art.c_s_t is not None else 25

    def to_artifact(self, class_name: str, caption_templates: list[str], resolution: int) -> SubjectArtifact:
        meta = {
            "resolution": resolution,
            "base_model": self.base_model,
            "architecture": architecture(self),
            "class_name": class_name,
            "caption_templates": caption_templates,
            "scheduler": {k: v for k, v in self.scheduler.config.items() if not k.startswith("_")},
            "training": {k: v for k, v in self.hparams.items() if not k.startswith("_")}
            | {"global_step": int(self.global_step), "drift": self.drift()},
        }
        art = SubjectArtifact(c_s=self.c_s.detach().float().cpu(), phi_s=self.phi_s.cpu(), metadata=meta)
        if self.stepwise_done:
            art.c_s_t, art.timesteps = self.c_s_t.detach().float().cpu(), self.stepwise_timesteps.cpu()
        return art
