"""Lightning callbacks for stage-1 training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from hifilight.io import image_grid, save_png
from hifilight.models import SDComponents
from hifilight.sampling.generate import make_jobs
from hifilight.sampling.renderer import SubjectRenderer
from hifilight.subjects import Subject


class SampleGrid(L.Callback):
    """Every `every_n_steps` training steps, and once at the end, generate a grid of the subject as it is now and
    log it, for any method (HiFi: the current c_s / c_s^t; Textual Inversion: the current token; DreamBooth: the
    current UNet; see each module's `sample_subject`).

    With a WandbLogger the grid goes to the run (`samples` panel); otherwise it is written as
    `<log_dir>/samples/step_<N>.png`.
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        every_n_steps: int = 250,
        steps: int | None = None,
        guidance: float = 7.5,
        seed: int = 0,
    ):
        """Args:
        prompts: prompts with {} for the subject.
        every_n_steps: interval in training steps; a grid is also logged when the fit ends.
        steps: DDIM steps (default: the method's own, the step-wise T for HiFi once its c_s^t exist, else 25).
        guidance: classifier-free guidance weight.
        seed: seed of each prompt's image.
        """
        self.prompts = prompts or ["a photo of a {}"]
        self.every_n_steps, self.steps, self.guidance, self.seed = every_n_steps, steps, guidance, seed
        self._last = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.log_grid(trainer, pl_module)

    def log_grid(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if step == self._last or not trainer.is_global_zero:
            return
        self._last = step
        grid = self.render(trainer, pl_module)
        logger = trainer.logger
        if logger is not None and type(logger).__name__ == "WandbLogger":
            logger.log_image(key="samples", images=[grid], step=step, caption=[f"step {step}"])
        else:
            out = Path(trainer.log_dir or trainer.default_root_dir) / "samples" / f"step_{step:06d}.png"
            save_png(grid, out, overwrite=True)

    @torch.no_grad()
    def render(self, trainer, module):
        dm = trainer.datamodule
        artifact, word, steps = module.sample_subject(dm)
        comps = SDComponents(
            module.unet, module.vae, module.text_encoder, module.tokenizer, module.scheduler, module.base_model
        )
        jobs = make_jobs(self.prompts, word, self.seed, 1)
        subject = Subject.of_artifact(artifact) if artifact is not None else None
        renderer = SubjectRenderer(comps).set_subject(subject, prepare=False)  # the module's components, as trained
        images = renderer.render(jobs, self.steps or steps, self.guidance, dm.resolution, progress=False)
        return image_grid([r.image for r in images], cols=len(jobs))


class FitCancelled(Exception):
    """A fit stopped on request (the service's cancel); what it had written is discarded by the caller."""


class ProgressFile(L.Callback):
    """Writes {"step", "total", "stage"} to `path` (JSON, atomically) after every optimizer step, and stops the fit
    with FitCancelled once `cancel` exists: how a process that runs a fit (the service's fit task) follows it and
    stops it without sharing Python objects with the LightningCLI that built it."""

    def __init__(self, path: str, cancel: str | None = None):
        self.path, self.cancel = Path(path), Path(cancel) if cancel else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import json

        from hifilight.io import write_atomic

        describe = getattr(pl_module, "progress_stage", None)
        stage = describe(trainer.global_step) if describe else f"step {trainer.global_step}/{trainer.max_steps}"
        state = {"step": trainer.global_step, "total": trainer.max_steps, "stage": stage}
        write_atomic(self.path, lambda tmp: tmp.write_text(json.dumps(state)), overwrite=True)
        if self.cancel is not None and self.cancel.exists():
            raise FitCancelled(f"cancelled at step {trainer.global_step}")
