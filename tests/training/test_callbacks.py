"""Sample grids during training: to the log folder, or to an offline Weights & Biases run."""

from pathlib import Path

import pytest
from conftest import EXAMPLE_SUBJECT, fit_args
from PIL import Image

from hifilight.cli import main


def _args(tmp_path, *extra):
    return fit_args(EXAMPLE_SUBJECT, tmp_path / "s.safetensors", tmp_path, *extra)


def test_sample_grid_is_written_to_the_log_dir(tmp_path):
    extra = [
        "--trainer.callbacks+=hifilight.training.callbacks.SampleGrid",
        "--trainer.callbacks.every_n_steps=2",
        "--trainer.callbacks.steps=2",
        '--trainer.callbacks.prompts=["a {}", "a {} on a beach"]',
    ]
    assert main(_args(tmp_path, *extra)) == 0
    grids = sorted(tmp_path.glob("lightning_logs/version_0/samples/step_*.png"))
    names = ["step_000002.png", "step_000004.png", "step_000006.png", "step_000007.png"]  # and at the end
    assert [g.name for g in grids] == names
    assert Image.open(grids[0]).size == (64, 32)


@pytest.mark.parametrize("method", ["textual_inversion", "dreambooth"])
def test_sample_grids_for_the_baselines_too(method, tmp_path):
    out = tmp_path / ("db" if method == "dreambooth" else "ti.safetensors")
    args = [
        "fit",
        "--method",
        method,
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--model.max_steps",
        "3",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--out",
        str(out),
        "--trainer.callbacks+=hifilight.training.callbacks.SampleGrid",
        "--trainer.callbacks.every_n_steps=2",
        '--trainer.callbacks.prompts=["a {}"]',
        "--trainer.callbacks.steps=2",
    ]
    if method == "dreambooth":
        args += ["--model.num_class_images", "2", "--model.class_steps", "2"]
    assert main(args) == 0
    grids = sorted(tmp_path.glob("lightning_logs/version_0/samples/step_*.png"))
    assert [g.name for g in grids] == ["step_000002.png", "step_000003.png"]


@pytest.mark.slow  # failed intermittently (cause not found) in ~1 of 15 full runs; runs in `make test-all`
def test_wandb_offline_run_gets_losses_and_grids(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "300")  # wandb's background service can start slowly on a loaded CPU
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[2] / "configs" / "hifi_ti_wandb.yaml"
    extra = [
        "--config",
        str(config),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "wb"),
        "--trainer.callbacks.every_n_steps=2",
        "--trainer.callbacks.steps=2",
        "--trainer.log_every_n_steps=1",
    ]
    assert main(_args(tmp_path, *extra)) == 0
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    import wandb

    wandb.finish()  # the CLI process would finish the run at exit
    media = list(runs[0].glob("files/media/images/samples_*.png"))
    assert len(media) == 4  # steps 2, 4 and 6 of 4 + 3 x 1, and the end (7)
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"train/loss" in records and b"samples" in records
