"""The fit progress bar: one bar over all optimizer steps that says where training is ("stage 1 120/1000",
"step-wise t=781 3/10" for HiFi Tuner, "step 40/400" for the baselines), without Lightning's epoch counter (our
fits are step-based: it read "Epoch 0/-2") and without the logger's version number."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    def _stage(self, trainer, pl_module) -> str:
        describe = getattr(pl_module, "progress_stage", None)
        return describe(trainer.global_step) if describe else f"step {trainer.global_step}/{trainer.max_steps}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
        bar.n = bar.initial = trainer.global_step  # a resumed fit starts where it stopped
        bar.set_description(self._stage(trainer, pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is not None and self._should_update(trainer.global_step, bar.total or 0):
            bar.n = trainer.global_step
            bar.set_description(self._stage(trainer, pl_module), refresh=False)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
