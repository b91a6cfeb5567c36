"""Lightning callbacks for stage-1 training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from hifilight.data.images import to_pil
from hifilight.io import image_grid, save_png
from hifilight.models import SDComponents
from hifilight.sampling.generate import generate, make_jobs


class SampleGrid(L.Callback):
    """Every `every_n_steps` training steps, generate a grid with the current c_s and log it.

    With a WandbLogger the grid goes to the run (`samples` panel); otherwise it is written as
    `<log_dir>/samples/step_<N>.png`.
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        every_n_steps: int = 250,
        steps: int = 25,
        guidance: float = 7.5,
        seed: int = 0,
    ):
        self.prompts = prompts or ["a photo of a {}"]
        self.every_n_steps, self.steps, self.guidance, self.seed = every_n_steps, steps, guidance, seed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or not trainer.is_global_zero:
            return
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
        artifact = module.to_artifact(dm.class_name, dm.caption_templates, dm.resolution)
        comps = SDComponents(
            module.unet,
            module.vae,
            module.text_encoder,
            module.tokenizer,
            module.scheduler,
            module.base_model,
        )
        jobs = make_jobs(self.prompts, dm.class_name, self.seed, 1)
        images = generate(comps, artifact, jobs, self.steps, self.guidance, dm.resolution, progress=False)
        return image_grid([to_pil(x) for x in images], cols=len(jobs))
