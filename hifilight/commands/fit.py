"""`hifilight fit`: subject learning through LightningCLI, one LightningModule per method.

hifilight fit --config configs/hifi_ti.yaml --data.subject_dir photos/ --data.class_name dog --out dog.safetensors

`--method` (or a top-level `method:` in a --config file) picks the module: hifi_ti (HiFi Tuner's embeddings, the
default), textual_inversion (the classic baseline) or dreambooth. Each module links its own step settings to
--trainer.max_steps and writes its own output (`save_outputs`).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI

from hifilight.commands.common import note_random_weights
from hifilight.data import SubjectDataModule
from hifilight.errors import HifiError
from hifilight.io import check_writable

METHODS = {
    "hifi_ti": "hifilight.training.subject_module:SubjectEmbeddingModule",
    "textual_inversion": "hifilight.training.textual_inversion:TextualInversionModule",
    "dreambooth": "hifilight.training.dreambooth:DreamBoothModule",
}

TRAINER_DEFAULTS = {
    # the data module shards global sample indices itself (hifilight.data.sampling); Lightning's
    # DistributedSampler would replace that
    "use_distributed_sampler": False,
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
        parser.add_argument("--method", type=str, default="hifi_ti", help=f"One of {', '.join(METHODS)}.")
        self.model_class.link_arguments(parser)  # the module's step settings set --trainer.max_steps

    def _fit_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._fit_config()
        check_writable(cfg.out, cfg.overwrite, "--overwrite")  # fail before any training, not after
        note_random_weights(cfg.model.pretrained)
        if cfg.method == "hifi_ti" and cfg.trainer.strategy in ("ddp", "ddp_spawn"):
            # stage 1 trains c_s and the step-wise stage c_work: DDP must allow the idle one (its grad stays None)
            cfg.trainer.strategy = f"{cfg.trainer.strategy}_find_unused_parameters_true"
            print(f"--trainer.strategy: using {cfg.trainer.strategy} (one embedding is idle in each stage)",
                  file=sys.stderr)  # fmt: skip
        if getattr(cfg.model, "stepwise_steps", None) == 0:
            print(
                "step-wise stage skipped (--model.stepwise_steps 0): the artifact will hold c_s only", file=sys.stderr
            )

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        cfg = self._fit_config()
        print(self.model.save_outputs(self.datamodule, cfg.out, cfg.overwrite))


def run(argv: list[str]) -> None:
    build_cli(["fit", *argv])


def peek_method(args: list[str]) -> str:
    """The --method of these arguments: the last --method flag, else the last `method:` of a --config file."""
    method = "hifi_ti"
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
        if arg.startswith("--config") and Path(value).is_file():
            try:
                loaded = yaml.safe_load(Path(value).read_text())
            except yaml.YAMLError as err:
                raise HifiError(f"--config {value}: not valid YAML ({str(err).splitlines()[0]})") from err
            method = loaded.get("method", method) if isinstance(loaded, dict) else method
        elif arg.startswith("--method"):
            method = value
    if method not in METHODS:
        raise HifiError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    return method


def module_class(method: str):
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def build_cli(args: list[str], run: bool = True) -> FitCLI:
    """The fit CLI; with run=False (no subcommand in `args`) it only parses and instantiates (used by tests)."""
    # Frozen models are in eval mode on purpose; `args` is how a dispatcher hands LightningCLI its arguments.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
    return FitCLI(
        module_class(peek_method(args)),
        SubjectDataModule,
        args=args,
        run=run,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "hifilight fit"} if not run else {"fit": {"prog": "hifilight fit"}},
    )
