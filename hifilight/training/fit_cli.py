"""The `hifilight fit` CLI: subject learning through LightningCLI, one LightningModule per method (the command
itself, `hifilight.commands.fit`, only calls `build_cli`; `evaluation.dreambench_protocol` fits through it too).

hifilight fit --config configs/hifi_ti.yaml --data.subject_dir photos/ --data.class_name dog --out dog.safetensors

`--method` (or a top-level `method:` in a --config file) picks the module: hifi_ti (HiFi Tuner's embeddings, the
default), textual_inversion (the classic baseline) or dreambooth. Each module links its own step settings to
--trainer.max_steps and writes its own output (`save_outputs`).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from hifilight.data import SubjectDataModule
from hifilight.errors import HifiError, OneLineParseErrors
from hifilight.io import check_output_path
from hifilight.models.loading import note_random_weights

METHODS = {
    "hifi_ti": "hifilight.training.subject_module:SubjectEmbeddingModule",
    "textual_inversion": "hifilight.training.textual_inversion:TextualInversionModule",
    "dreambooth": "hifilight.training.dreambooth:DreamBoothModule",
    "lora": "hifilight.training.lora:LoRAModule",
}

TRAINER_DEFAULTS = {
    # the data module shards global sample indices itself (hifilight.data.draws); Lightning's
    # DistributedSampler would replace that
    "use_distributed_sampler": False,
    "log_every_n_steps": 10,
    "enable_model_summary": False,
    "default_root_dir": "outputs/fit",
}


SUBCOMMAND = "fit"  # LightningCLI's subcommand: its parser names every key "fit.<key>"


def check_out_extension(out: str, method: str) -> None:
    """Every fitted subject but DreamBooth's is one safetensors file, and the tools that read it (hifilight, diffusers'
    `load_lora_weights`, A1111) go by the extension: a name without it is refused before any training."""
    if method == "dreambooth":
        if out.endswith(".safetensors"):
            raise HifiError(
                f"--out {out}: DreamBooth writes a diffusers folder; pass a folder name without .safetensors "
                "(`hifilight export checkpoint` then writes one file)"
            )
    elif not out.endswith(".safetensors"):
        raise HifiError(f"--out {out}: a {method} subject is one .safetensors file; pass --out {out}.safetensors")


class FitParser(OneLineParseErrors, LightningArgumentParser):
    """LightningCLI's parser; a bad argument is one line naming the flag, the value and what it takes. The user
    types `hifilight fit --data.x`, which LightningCLI parses as its `fit` subcommand's `fit.data.x`."""

    def error(self, message: str, ex: Exception | None = None):
        try:
            return super().error(message, ex)
        except HifiError as err:
            text = re.sub(
                r"\(see `[^`]*`\)$", "(see `hifilight fit --help`)", str(err).replace(f"--{SUBCOMMAND}.", "--")
            )
            raise HifiError(text) from None


class FitCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """`fit` alone: hifilight runs no other Trainer subcommand, and each one's parser is as costly to build as
        fit's (LightningCLI builds all four before parsing: `hifilight fit --help` took 3.4x as long with them)."""
        return {"fit": LightningCLI.subcommands()["fit"]}

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

    def instantiate_trainer(self, **kwargs):
        """Lightning's trainer, with the step-based progress bar (training.progress) unless the bar is off or the
        user configured another."""
        from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

        from hifilight.training.progress import StepProgressBar

        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_config.get("callbacks") or [])
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            kwargs["callbacks"] = [*callbacks, StepProgressBar()]
        return super().instantiate_trainer(**kwargs)

    def _fit_config(self):
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._fit_config()
        # fail before any training, not after: the output must be new (or --overwrite) and writable
        check_output_path(cfg.out, cfg.overwrite, "--out", folder=cfg.method == "dreambooth")
        check_out_extension(str(cfg.out), cfg.method)
        note_random_weights(cfg.model.pretrained)
        if cfg.method == "hifi_ti" and cfg.trainer.strategy in ("ddp", "ddp_spawn"):
            # stage 1 trains c_s and the step-wise stage c_work: DDP must allow the idle one (its grad stays None)
            cfg.trainer.strategy = f"{cfg.trainer.strategy}_find_unused_parameters_true"
            print(
                f"--trainer.strategy: using {cfg.trainer.strategy} (one embedding is idle in each stage)",
                file=sys.stderr,
            )
        if getattr(cfg.model, "stepwise_steps", None) == 0:
            print(
                "step-wise stage skipped (--model.stepwise_steps 0): the artifact will hold c_s only", file=sys.stderr
            )

    def before_fit(self) -> None:
        self._started = time.monotonic()

    def summary(self) -> str:
        """The fit's key numbers for the last line: steps, time, the last logged loss."""
        loss = next((v for k, v in self.trainer.callback_metrics.items() if k.endswith("/loss")), None)
        took = time.monotonic() - getattr(self, "_started", time.monotonic())
        return f"{self.trainer.global_step} steps in {took:.0f} s" + (f", last loss {float(loss):.4f}" if loss else "")

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        cfg = self._fit_config()
        try:
            print(f"{self.model.save_outputs(self.datamodule, cfg.out, cfg.overwrite)}; {self.summary()}")
        except (OSError, HifiError) as err:  # the training is not lost: write it where we can, say where
            rescue = recovery_path(cfg.out)
            print(self.model.save_outputs(self.datamodule, rescue, False), file=sys.stderr)
            raise HifiError(
                f"--out {cfg.out}: could not be written ({err}); the result was saved to {rescue}"
            ) from None


def check_checkpoint(path) -> None:
    """--ckpt_path must be a local Lightning checkpoint that loads without unpickling code (weights_only)."""
    import torch

    text = str(path)
    if "://" in text:
        raise HifiError(f"--ckpt_path {text}: only local files are resumed from; download it first")
    if not Path(text).is_file():
        raise HifiError(f"--ckpt_path {text}: no such file; pass a .ckpt from <default_root_dir>/.../checkpoints/")
    try:
        ckpt = torch.load(text, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch's safe unpickler raises many kinds on foreign bytes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HifiError(f"--ckpt_path {text}: not a checkpoint hifilight can load safely ({first[:160]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        raise HifiError(f"--ckpt_path {text}: not a Lightning checkpoint (no state_dict / global_step)")


def recovery_path(out: Path) -> Path:
    """A new path for a result that could not be written to --out: outputs/recovered/<name> (numbered if taken),
    else the system's temporary folder."""
    for root in (Path("outputs/recovered"), Path(tempfile.gettempdir()) / "hifilight-recovered"):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        for k in range(1000):
            candidate = root / (Path(out).name if k == 0 else f"{Path(out).stem}-{k}{Path(out).suffix}")
            if not candidate.exists():
                return candidate
    raise HifiError(f"--out {out}: could not be written and no recovery folder is writable")


def peek(args: list[str], key: str, default=None):
    """The value of --<key> in these arguments: the last flag, else the last top-level `key:` of a --config file
    (LightningCLI reads some values, e.g. the checkpoint, before any of our hooks run)."""
    value = default
    for i, arg in enumerate(args):
        given = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
        if arg.startswith("--config") and Path(given).is_file():
            try:
                loaded = yaml.safe_load(Path(given).read_text())
            except yaml.YAMLError as err:
                raise HifiError(f"--config {given}: not valid YAML ({str(err).splitlines()[0]})") from err
            value = loaded.get(key, value) if isinstance(loaded, dict) else value
        elif arg.split("=", 1)[0] == f"--{key}":
            value = given
    return value


def peek_method(args: list[str]) -> str:
    """The --method of these arguments (default hifi_ti)."""
    method = peek(args, "method", "hifi_ti")
    if method not in METHODS:
        raise HifiError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    return method


def check_resume(args: list[str]) -> None:
    """Before LightningCLI opens --ckpt_path: it must be a safe local checkpoint, and nothing may turn off
    weights_only (an unpickled checkpoint can run any code)."""
    if str(peek(args, "weights_only", "")).lower() in ("false", "0", "no"):
        raise HifiError(
            "--weights_only false would unpickle the checkpoint (it can run any code); hifilight only "
            "resumes from its own checkpoints, which load with weights_only (drop the flag)"
        )
    ckpt = peek(args, "ckpt_path")
    if ckpt not in (None, "", "null", "None"):
        check_checkpoint(ckpt)


def module_class(method: str):
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def build_cli(args: list[str], run: bool = True) -> FitCLI:
    """The fit CLI; with run=False (no subcommand in `args`) it only parses and instantiates (used by tests)."""
    # Frozen models are in eval mode on purpose; `args` is how a dispatcher hands LightningCLI its arguments.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
    check_resume(args)
    return FitCLI(
        module_class(peek_method(args)),
        SubjectDataModule,
        args=args,
        run=run,
        trainer_defaults=TRAINER_DEFAULTS,
        parser_class=FitParser,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=fit_help(peek_method(args)) if not run else {"fit": fit_help(peek_method(args))},
    )


def fit(
    method: str,
    subject_dir: str | Path,
    class_name: str,
    out: str | Path,
    *,
    config: str | Path | None = None,
    args: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
    overwrite: bool = False,
) -> Path:
    """Learn one subject, as `hifilight fit --method <method>` does (the one fit entry of the CLI, the Python API,
    `evaluate` and the ToyWorld ablation); returns `out`.

    Settings apply in this order, later ones winning: the fit YAML `config`, then `args` (fit flags as a user types
    them, e.g. a recipe's or a tuning point's ["--model.learning_rate", "0.01"]), then `options`: typed values by
    flag name without the dashes ({"model.use_mask": True, "data.resolution": 64}), then the subject and `out`.
    Bad settings raise HifiError with the CLI's one-line message."""
    if method not in METHODS:
        raise HifiError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    argv = ["fit", "--method", method, *(["--config", str(config)] if config else []), *args]
    for key, value in (options or {}).items():
        argv += [f"--{key.removeprefix('--')}", flag_value(value)]
    argv += ["--data.subject_dir", str(subject_dir), "--data.class_name", class_name, "--out", str(out)]
    build_cli([*argv, "--overwrite", flag_value(overwrite)])
    return Path(out)


def flag_value(value: object) -> str:
    """A typed value as the fit parser reads it from the command line (true/false, JSON lists and dicts)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def fit_help(method: str) -> dict:
    """A short usage line and what `--help` shows: each method has its own --model.* options."""
    others = " or ".join(f"`hifilight fit --method {m} --help`" for m in METHODS if m != method)
    return {
        "prog": "hifilight fit",
        "usage": "hifilight fit [--config FILE] [--method METHOD] [--data.* ...] [--model.* ...] [--trainer.* ...]",
        "description": f"Learn a subject from 3-6 photos. The options below are those of --method {method}; the "
        f"other methods have their own --model.* options: {others}. Recipes: configs/*.yaml; guide: docs/fit.md.",
    }
