"""The DreamBench protocol as one function (fit, generate every prompt, score DINO / CLIP-I / CLIP-T): what
`hifilight evaluate` runs and what the ToyWorld ablation calls.

hifilight evaluate --dataset dreambench/ --method table2 --images_per_prompt 4 --out eval/
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from hifilight.errors import HifiError
from hifilight.evaluation.dreambench import load_dreambench
from hifilight.evaluation.rows import Row, method_rows, select_rows
from hifilight.evaluation.runner import EvalSettings, Runner
from hifilight.guide_builder import build_guide
from hifilight.io import write_atomic
from hifilight.models.loading import note_random_weights
from hifilight.options import ModelOptions, ReferenceOptions, SourceOptions, resolve_device
from hifilight.perception.encoders import CLIP_DEFAULT, DINO_DEFAULT

SD14 = "CompVis/stable-diffusion-v1-4"


@dataclass
class MetricOptions:
    """Scoring protocol (defaults follow DreamBooth; every choice is written beside the results).

    Args:
        dino_model: DINO for the DINO score (DreamBooth: ViT-S/16): hub id, local folder, "tiny", or a plugin's
            name ("toyworld": ToyDINO).
        clip_model: CLIP for CLIP-I and CLIP-T (common choice: ViT-B/32): hub id, local folder, or "tiny".
        pairing: "all" generated x real pairs (DreamBooth) or "one_to_one".
        scale100: report x100 instead of [-1, 1] (the paper reports [-1, 1]).
        clip_t_text: CLIP-T's text: the prompt with the class word only ("class") or also with the method's
            identifier ("identifier"; the embedding methods have none).
    """

    dino_model: str = DINO_DEFAULT
    clip_model: str = CLIP_DEFAULT
    pairing: Literal["all", "one_to_one"] = "all"
    scale100: bool = False
    clip_t_text: Literal["class", "identifier"] = "class"


@dataclass
class EvalArgs:
    """Options of the DreamBench protocol (`hifilight evaluate`): fit each subject, generate every prompt, score DINO,
    CLIP-I and CLIP-T.

    Args:
        dataset: DreamBench-layout folder: <subject>/<NN>.jpg plus prompts_and_classes.txt (or subjects.csv with
            subject_name,class[,live], or --class_name for all subjects).
        method: "hifi_ti" (with the switches below), "textual_inversion" (classic TI), "dreambooth",
            "hifi_dreambooth" (DreamBooth + reference guidance), "sd" (base model, no subject), "real"
            (real-vs-real), "table1" (the paper's Table 1: real, sd, TI, ours (TI), DreamBooth, ours (DreamBooth))
            or "table2" (its ablation ladder: Textual Inversion, + mask, + regularization (output-space c_s
            with Eq. 6), + step-wise, + reference guidance, and an extra output-space row without the
            regulariser), "table2_dreambooth" (table2, then DreamBooth with and without reference guidance) or
            "ti_vs_ours" (classic Textual Inversion and ours with every technique).
        out: results folder; rerunning with the same folder resumes (nothing on disk is recomputed).
        rows: only these rows of --method, by name (e.g. '[textual_inversion, ti_mask]').
        images_per_prompt: images per prompt (DreamBench: 4).
        subjects: only these subjects (folder names); default all.
        prompts: only these prompt indices (0-24); default all 25.
        class_name: class word for every subject when the dataset has no class table.
        mask: hifi_ti switch: masked loss (Eq. 5).
        regularizer: hifi_ti switch: regulariser (Eq. 6).
        stepwise: hifi_ti switch: step-wise embeddings (Algorithm 1, Eq. 7).
        reference_guidance: hifi_ti switch: reference-guided generation (Algorithm 2).
        reference_on_live: also guide live subjects (the paper guides only the rigid objects).
        fit_config: `hifilight fit` YAML for the HiFi fits (e.g. configs/hifi_ti.yaml); default: module defaults.
        ti_config: YAML for the Textual Inversion fits (e.g. configs/textual_inversion.yaml).
        dreambooth_config: YAML for the DreamBooth fits (e.g. configs/dreambooth.yaml).
        lora_config: YAML for the LoRA fits (rows of "lora", "lora_ladder", "table2_lora").
        fit_args: extra `hifilight fit` arguments for every fit, e.g. '["--trainer.precision", "16-mixed"]'.
        method_fit_args: extra arguments per fit method (hifi_ti, textual_inversion, dreambooth), e.g.
            '{"hifi_ti": ["--model.stage1_steps", "500"]}'.
        row_fit_args: extra arguments per row (by row name, applied last), e.g. the choices of `hifilight
            toyworld tune`; a row that only samples differently (reference guidance) uses its fit's row.
        model: base model (default CompVis/stable-diffusion-v1-4), used for the fits and generation.
        steps: DDIM steps (also the step-wise stage's T).
        guidance: classifier-free guidance weight.
        resolution: training and generation size in pixels.
        batch_size: images generated together.
        seed: image k of every prompt uses seed + k, so all methods share their x_T.
        metrics: scoring protocol.
        reference: reference-guided generation settings (see `hifilight predict --help`).
        devices: processes to spread the subjects over (one GPU each when CUDA is there, via CUDA_VISIBLE_DEVICES);
            each writes its own results file, merged when all are done (logs in <out>/shards/).
        shard: "k/n": run only subjects k, k+n, ... (what each of --devices' processes runs).
        print_table: print the DINO / CLIP-I / CLIP-T table at the end (table.md is written either way).
    """

    dataset: Path
    method: str = "hifi_ti"
    out: Path = Path("outputs/eval")
    rows: list[str] | None = None
    images_per_prompt: int = 4
    subjects: list[str] | None = None
    prompts: list[int] | None = None
    class_name: str | None = None
    mask: bool = True
    regularizer: bool = True
    stepwise: bool = True
    reference_guidance: bool = False
    reference_on_live: bool = False
    fit_config: Path | None = None
    ti_config: Path | None = None
    dreambooth_config: Path | None = None
    lora_config: Path | None = None
    fit_args: list[str] | None = None
    method_fit_args: dict[str, list[str]] | None = None
    row_fit_args: dict[str, list[str]] | None = None
    model: ModelOptions | None = None
    steps: int = 50
    guidance: float = 7.5
    resolution: int = 512
    batch_size: int = 4
    seed: int = 0
    metrics: MetricOptions | None = None
    reference: ReferenceOptions | None = None
    devices: int = 1
    shard: str | None = None
    print_table: bool = True


def evaluate(args: EvalArgs) -> None:
    """Run the DreamBench protocol: fit each subject, generate every prompt, score DINO, CLIP-I and CLIP-T (the options:
    `EvalArgs`)."""
    config = evaluate_config(args)
    model, metrics = args.model or ModelOptions(), args.metrics or MetricOptions()
    reference = args.reference or ReferenceOptions()
    try:
        switches = (args.mask, args.regularizer, args.stepwise, args.reference_guidance)
        rows = select_rows(method_rows(args.method, *switches), args.rows)
    except ValueError as err:
        raise HifiError(f"{err} (--method {args.method})") from None
    _check(args.images_per_prompt, metrics, rows, reference, args.steps, args.guidance, args.resolution)
    bench = load_dreambench(Path(args.dataset), args.subjects, args.class_name)
    part = parse_shard(args.shard)
    if args.devices < 1:
        raise HifiError(f"--devices must be >= 1, got {args.devices}")
    if args.devices > 1 and part is None:
        _launch_shards(config, args.devices, Path(args.out), model.device)
    note_random_weights(model.pretrained or SD14)
    _runner(args, model, metrics, reference, part).run(rows, bench)
    if part is None and args.print_table:
        print(f"wrote {Path(args.out) / 'results.csv'}, summary.json and table.md")


def _runner(args: EvalArgs, model: ModelOptions, metrics: MetricOptions, reference, part) -> Runner:
    """The runner of one evaluation: its settings, the fitter, the loaders, the scorers and the guide."""
    from hifilight.models import load_components
    from hifilight.perception.encoders import ClipEncoder, DinoEncoder

    pretrained, device = model.pretrained or SD14, resolve_device(model.device)
    dino = DinoEncoder.from_pretrained(metrics.dino_model, device, flag="--metrics.dino_model")
    clip = ClipEncoder.from_pretrained(metrics.clip_model, device, flag="--metrics.clip_model")
    settings = EvalSettings(Path(args.out), args.images_per_prompt, args.prompts, args.steps, args.guidance,
                            args.resolution, args.batch_size, args.seed, metrics.clip_t_text, args.reference_on_live,
                            pretrained, part, print_table=args.print_table)  # fmt: skip
    configs = {"hifi_ti": args.fit_config, "textual_inversion": args.ti_config,
               "dreambooth": args.dreambooth_config, "lora": args.lora_config}  # fmt: skip
    extra = (args.fit_args or [], args.method_fit_args or {})
    settings.fit = _fitter(Path(args.out), pretrained, model.dtype, configs, *extra, args.steps, args.resolution,
                           args.row_fit_args or {})  # fmt: skip

    def guide(fitted, bench):
        return build_guide(fitted, SourceOptions(subject_dir=bench.folder), reference, args.resolution, device, dino)

    return Runner(settings, lambda name: load_components(name, model.dtype, device), dino, clip, metrics.pairing,
                  metrics.scale100, reference_guide=guide)  # fmt: skip


def _check(images_per_prompt, metrics: MetricOptions, rows: list[Row], reference, steps, guidance, resolution):
    if images_per_prompt < 1:
        raise HifiError(f"--images_per_prompt must be >= 1, got {images_per_prompt}")
    if resolution % 8:
        raise HifiError(f"--resolution must be a multiple of 8, got {resolution}")
    if any(r.reference for r in rows):
        try:
            reference.guide.check(steps, guidance)
        except ValueError as err:
            raise HifiError(str(err)) from None


def evaluate_config(args: EvalArgs) -> dict:
    """`args` as the YAML that `hifilight evaluate --config` reads (without the process's --devices and --shard)."""
    return {k: v for k, v in _plain(args).items() if k not in ("devices", "shard")}


def _plain(value):
    """A config value as plain YAML data (dataclasses -> dicts, paths -> strings)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_shard(shard: str | None, flag: str = "--shard") -> tuple[int, int] | None:
    """ "k/n" as (k, n), None for None; a HifiError naming `flag` otherwise."""
    if shard is None:
        return None
    try:
        k, n = (int(x) for x in shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        raise HifiError(f"{flag} {shard}: expected k/n with 0 <= k < n, e.g. 0/2") from None
    return k, n


def _launch_shards(config: dict, n: int, out: Path, device: str) -> None:
    """Run n `hifilight evaluate --shard k/n` processes on the same config and wait for all of them."""
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    jobs = [
        EvaluateJob(
            f"shard{k}", config, ["--shard", f"{k}/{n}"], {"CUDA_VISIBLE_DEVICES": str(k % gpus)} if gpus else {}
        )
        for k in range(n)
    ]
    run_evaluate_jobs(jobs, out / "shards", parallel=n)


@dataclass(frozen=True)
class EvaluateJob:
    """One `hifilight evaluate` process: its name (of its config and log), config, extra flags and environment."""

    name: str
    config: dict
    flags: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)


def run_evaluate_jobs(jobs: list[EvaluateJob], folder: Path, parallel: int) -> None:
    """Run `hifilight evaluate --config <folder>/<name>.yaml <flags>` per job, at most `parallel` at a time (logs:
    <folder>/<name>.log), and wait for all; a failed job is named with its log once every job has ended."""
    folder.mkdir(parents=True, exist_ok=True)
    waiting, running, failed = list(jobs), [], []
    print(f"evaluate: {len(jobs)} processes, {parallel} at a time (logs: {folder}/<name>.log)", file=sys.stderr)
    while waiting or running:
        while waiting and len(running) < parallel:
            running.append(_start(waiting.pop(0), folder))
        job, proc, log = running.pop(0)
        if proc.wait() != 0:
            failed.append(job.name)
        log.close()
    if failed:
        raise HifiError(
            f"evaluate process(es) {', '.join(failed)} failed; see {folder}/<name>.log (finished cells are kept: "
            "rerun to resume)"
        )


def _start(job: EvaluateJob, folder: Path):
    """Write the job's config and start its process; (job, process, open log)."""
    config_path = folder / f"{job.name}.yaml"
    write_atomic(config_path, lambda tmp: tmp.write_text(yaml.safe_dump(job.config)), overwrite=True)
    log = (folder / f"{job.name}.log").open("w")
    cmd = [sys.executable, "-m", "hifilight.cli", "evaluate", "--config", str(config_path), *job.flags]
    return job, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ | job.env), log


def _fitter(
    out: Path,
    pretrained: str,
    dtype: str,
    configs: dict,
    fit_args: list[str],
    method_args: dict,
    steps: int,
    resolution: int,
    row_args: dict,
):
    """The fit of one subject for one row: the user's arguments (all fits, the method's, the row's), then the row's
    switches (`row_options`)."""

    def fit(subject, row: Row, path: Path) -> None:
        from hifilight.training.fit_cli import fit as fit_subject

        args = [*fit_args, *method_args.get(row.kind, []), *row_args.get(row.name, [])]
        options = {
            "trainer.default_root_dir": out / "fit_logs" / subject.name / path.stem,
            "model.pretrained": pretrained,
            "data.resolution": resolution,
            **row_options(row, dtype, steps),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        config = configs.get(row.kind)
        fit_subject(row.kind, subject.folder, subject.class_name, path, config=config, args=args, options=options)

    return fit


def row_options(row: Row, dtype: str, steps: int) -> dict[str, object]:
    """The fit settings a row's switches mean (Table 2: the mask is Eq. 5, the regulariser Eq. 6)."""
    if row.kind == "hifi_ti":
        # no stepwise_steps 0 for rows sampled with c_s alone: they share the step-wise fit's c_s
        return {
            "model.dtype": dtype,
            "model.stepwise_num_steps": steps,
            "model.use_mask": row.mask,
            "model.use_regularizer": row.regularizer,
            **({} if row.mask else {"data.masks": "none"}),
        }
    if row.kind in ("textual_inversion", "lora"):  # the "+ mask" rows: the same fit with Eq. 5
        return {"model.use_mask": row.mask, "data.masks": "auto" if row.mask else "none"}
    return {}
