"""`hifilight fit`: stage-1 subject-embedding training through LightningCLI.

hifilight fit --config configs/hifi_ti.yaml --data.subject_dir photos/ --data.class_name dog --out dog.safetensors
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from hifilight.commands.common import note_random_weights
from hifilight.data import SubjectDataModule
from hifilight.io import check_writable
from hifilight.training import SubjectEmbeddingModule
from hifilight.training.stepwise import total_steps

TRAINER_DEFAULTS = {
    "log_every_n_steps": 10,
    "enable_model_summary": False,
    "default_root_dir": "outputs/fit",
}


class FitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--out",
            type=Path,
            default=Path("outputs/subject.safetensors"),
            help="Where to write the subject artifact (.safetensors).",
        )
        parser.add_argument("--overwrite", type=bool, default=False, help="Replace --out if it already exists.")
        # Stage 1 + step-wise stage run as one fit: their lengths set max_steps (see StepwisePlan).
        parser.link_arguments(
            ("model.stage1_steps", "model.stepwise_steps", "model.stepwise_num_steps"),
            "trainer.max_steps",
            compute_fn=total_steps,
        )

    def _fit_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._fit_config()
        check_writable(cfg.out, cfg.overwrite, "--overwrite")  # fail before any training, not after
        note_random_weights(cfg.model.pretrained)
        if cfg.model.stepwise_steps == 0:
            print(
                "step-wise stage skipped (--model.stepwise_steps 0): the artifact will hold c_s only", file=sys.stderr
            )

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        cfg = self._fit_config()
        dm = self.datamodule
        artifact = self.model.to_artifact(dm.class_name, dm.caption_templates, dm.resolution)
        path = artifact.save(cfg.out, overwrite=cfg.overwrite)
        kind = f"c_s and {len(artifact.timesteps)} step-wise c_s^t" if artifact.c_s_t is not None else "c_s only"
        print(f"wrote subject artifact {path} ({kind})")


def run(argv: list[str]) -> None:
    build_cli(["fit", *argv])


def build_cli(args: list[str], run: bool = True) -> FitCLI:
    """The fit CLI; with run=False (no subcommand in `args`) it only parses and instantiates (used by tests)."""
    # Frozen models are in eval mode on purpose; `args` is how a dispatcher hands LightningCLI its arguments.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
    return FitCLI(
        SubjectEmbeddingModule,
        SubjectDataModule,
        args=args,
        run=run,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "hifilight fit"} if not run else {"fit": {"prog": "hifilight fit"}},
    )
