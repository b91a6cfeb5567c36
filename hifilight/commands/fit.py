"""`hifilight fit`: stage-1 subject-embedding training through LightningCLI.

hifilight fit --config configs/hifi_ti.yaml --data.subject_dir photos/ --data.class_name dog --out dog.safetensors
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from hifilight.commands.common import note_random_weights
from hifilight.data import SubjectDataModule
from hifilight.io import check_writable
from hifilight.training import SubjectEmbeddingModule

TRAINER_DEFAULTS = {
    "max_steps": 1000,  # paper Sec. 4: c_s is optimised for 1000 steps
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

    def _fit_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._fit_config()
        check_writable(cfg.out, cfg.overwrite, "--overwrite")  # fail before any training, not after
        note_random_weights(cfg.model.pretrained)

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        cfg = self._fit_config()
        dm = self.datamodule
        artifact = self.model.to_artifact(dm.class_name, dm.caption_templates, dm.resolution)
        path = artifact.save(cfg.out, overwrite=cfg.overwrite)
        print(f"wrote subject artifact {path}")


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
