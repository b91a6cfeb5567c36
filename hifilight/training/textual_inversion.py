"""Classic Textual Inversion (Gal et al. 2023), the paper's baseline: new placeholder token(s) whose rows of the text
encoder's input embedding table are the only trained parameters, with the plain diffusion loss (Eq. 2). On SDXL
the token has rows in both encoders' tables (as SDXL embeddings elsewhere have), trained together.

The table itself is never modified during training: a forward hook on the token embedding puts the trainable
vectors at the placeholder positions, so gradients reach only them (through the frozen text encoder) and the
optimiser holds state for num_vectors x d numbers rather than the whole vocabulary. Training captions are the data
module's templates with the placeholder for the subject ("a photo of a <sks>").
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch import Tensor

from hifilight.conditioning import tokenize
from hifilight.data.draws import noise_and_timesteps
from hifilight.errors import HifiError, check_numbers
from hifilight.masking import MaskRule
from hifilight.models.sdxl import architecture
from hifilight.prompts import render
from hifilight.token_embeddings import TokenEmbedding, add_tokens, table_widths, token_names, token_tables
from hifilight.training.latents import LatentCache
from hifilight.training.losses import denoising_loss
from hifilight.training.unet_options import attach_components

FROZEN = ("unet", "vae", "text_encoder")


class TextualInversionModule(L.LightningModule):
    def __init__(
        self,
        pretrained: str = "tiny",
        dtype: Literal["float32", "float16", "bfloat16"] = "float32",
        placeholder: str = "<sks>",
        num_vectors: int = 1,
        initializer: str | None = None,
        learning_rate: float = 5e-3,
        max_steps: int = 1000,
        use_mask: bool = False,
        mask_rule: MaskRule = "area",
        seed: int = 0,
        gradient_checkpointing: bool = False,
        attention: Literal["sdpa", "classic"] = "sdpa",
    ):
        """Learn input-space token embedding(s) for the subject (classic Textual Inversion).

        Args:
            pretrained: base model: "tiny", a local diffusers pipeline folder, or a hub id.
            dtype: dtype of the frozen models (the vectors are float32).
            placeholder: the new token (must not be in the vocabulary); prompts use it for the subject.
            num_vectors: vectors per placeholder (Gal et al.: 1); extra ones are named <tok>_1, <tok>_2, ...
            initializer: word whose token embedding(s) initialise the vectors (default: the class word; a word of
                several tokens gives their mean).
            learning_rate: Adam learning rate (Gal et al.: 5e-3 before batch scaling).
            max_steps: optimizer steps (--trainer.max_steps follows it; HiFi Tuner's baseline: fewer than the
                original 5000, 1000 in configs/textual_inversion.yaml).
            use_mask: multiply the loss by the subject mask (Eq. 5; off for the classic baseline, on for Table 2's
                "+ mask" row).
            mask_rule: how the photo's mask becomes the latent M: "area", "touched" or "soft" (hifilight.masking).
            gradient_checkpointing: recompute UNet activations in the backward pass (less memory, more time).
            attention: UNet attention: "sdpa" (default) or "classic".
            seed: seed of the per-sample timestep and noise draws (see hifilight.data.draws).
        """
        super().__init__()
        check_numbers(
            ("--model.num_vectors", num_vectors, ">= 1"),
            ("--model.learning_rate", learning_rate, "> 0"),
            ("--model.max_steps", max_steps, ">= 1"),
        )
        self.save_hyperparameters()
        attach_components(self, pretrained, dtype, gradient_checkpointing, attention)
        self.tokens = token_names(placeholder, num_vectors)
        self.widths = table_widths(self.text_encoder)  # SDXL: one token table per text encoder
        self.text_encoder.requires_grad_(False)
        self.vectors = torch.nn.Parameter(torch.zeros(num_vectors, sum(self.widths)))
        self._initialised = False
        self._latents = LatentCache(mask_rule)
        self._captions: dict[str, str] = {}
        start = 0
        for (tokenizer, encoder), width in zip(
            token_tables(self.tokenizer, self.text_encoder), self.widths, strict=True
        ):
            ids = add_tokens(tokenizer, encoder, self.tokens)
            encoder.get_input_embeddings().register_forward_hook(self._inserter(ids, slice(start, start + width)))
            start += width
        self.strict_loading = False

    def _inserter(self, token_ids: list[int], columns: slice):
        """A forward hook on one token table that puts this table's share of the vectors at the placeholders."""

        def insert(module, inputs, output: Tensor) -> Tensor:
            ids = inputs[0]
            for k, token_id in enumerate(token_ids):
                row = self.vectors[k, columns].to(output.dtype)
                output = torch.where((ids == token_id)[..., None], row, output)
            return output

        return insert

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        self.class_name = dm.class_name
        text = " ".join(self.tokens)
        self._captions = {render(t, dm.class_name): render(t, text) for t in dm.caption_templates}
        if not self._initialised:
            self.initialise(self.hparams.initializer or dm.class_name)

    def initialise(self, word: str) -> None:
        rows = []
        for tokenizer, encoder in token_tables(self.tokenizer, self.text_encoder):
            ids = tokenizer(word, add_special_tokens=False).input_ids
            if not ids:
                raise HifiError(f"--model.initializer {word!r} has no tokens; pass a word such as the class name")
            rows.append(encoder.get_input_embeddings().weight[ids].float().mean(0))
        with torch.no_grad():
            self.vectors.copy_(torch.cat(rows).expand_as(self.vectors))
        self._initialised = True

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        latents, mask = self._latents(self.vae, batch["pixels"], batch["mask"], list(batch["cache_key"]))
        ids = tokenize(self.tokenizer, [self._captions[c] for c in batch["caption"]]).to(self.device)
        c = self.text_encoder(ids).last_hidden_state
        noise, t = noise_and_timesteps(
            self.hparams.seed,
            batch["sample_id"].tolist(),
            tuple(latents.shape[1:]),
            len(self.alphas_cumprod),
            latents.device,
        )
        mask = mask if self.hparams.use_mask else None
        loss = denoising_loss(
            self.unet, latents, noise, t, c, self.alphas_cumprod, self.scheduler.config.prediction_type, mask
        )
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam([self.vectors], lr=self.hparams.learning_rate)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(FROZEN)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._initialised = True  # the checkpoint's vectors replace the initial ones

    @staticmethod
    def link_arguments(parser) -> None:
        parser.link_arguments("model.max_steps", "trainer.max_steps")

    def sample_subject(self, datamodule) -> tuple[None, str, int]:
        """What a sample grid renders now: no artifact (the hook puts the vectors in), the prompt word as `predict`
        writes it ("<sks> dog"), 25 DDIM steps."""
        return None, f"{' '.join(self.tokens)} {datamodule.class_name}", 25

    def to_embedding(self, resolution: int) -> TokenEmbedding:
        meta = {
            "base_model": self.base_model,
            "class_name": self.class_name,
            "resolution": resolution,
            "architecture": architecture(self),
            "training": dict(self.hparams) | {"global_step": int(self.global_step)},
        }
        widths = self.widths if len(self.widths) > 1 else ()
        return TokenEmbedding(self.hparams.placeholder, self.vectors.detach().float().cpu(), meta, widths)

    def save_outputs(self, datamodule, out, overwrite: bool) -> str:
        path = self.to_embedding(datamodule.resolution).save(out, overwrite)
        return f"wrote token embedding {path} ({', '.join(self.tokens)}; use it in prompts)"
