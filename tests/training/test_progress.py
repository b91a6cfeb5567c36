"""The fit progress bar says where training is, for every step of Algorithm 1's schedule."""

import pytest
from conftest import EXAMPLE_SUBJECT

from hifilight.training.fit_cli import build_cli
from hifilight.training.progress import StepProgressBar
from hifilight.training.stepwise import StepwisePlan


def test_describe_walks_stage_1_then_each_timestep():
    plan = StepwisePlan(stage1_steps=3, steps_per_timestep=2, timesteps=(901, 501, 1))
    got = [plan.describe(s) for s in range(plan.total_steps + 1)]
    assert got[:3] == ["stage 1 0/3", "stage 1 1/3", "stage 1 2/3"]
    assert got[3:] == [
        "step-wise t=901 0/2",
        "step-wise t=901 1/2",
        "step-wise t=501 0/2",
        "step-wise t=501 1/2",
        "step-wise t=1 0/2",
        "step-wise t=1 1/2",
        "step-wise t=1 1/2",
    ]
    assert StepwisePlan(4, 0, (1,)).describe(2) == "stage 1 2/4"  # no step-wise stage


@pytest.mark.parametrize(
    ("method", "enabled"), [("hifi_ti", "true"), ("textual_inversion", "true"), ("hifi_ti", "false")]
)
def test_every_fit_gets_the_step_bar_unless_the_bar_is_off(method, enabled, tmp_path):
    args = [
        "--method",
        method,
        "--model.pretrained",
        "tiny",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--out",
        str(tmp_path / "s.safetensors"),
        "--trainer.enable_progress_bar",
        enabled,
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    cli = build_cli(args, run=False)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, StepProgressBar)]
    assert len(bars) == (enabled == "true")
    if method == "hifi_ti":
        assert cli.model.progress_stage(0) == f"stage 1 0/{cli.model.hparams.stage1_steps}"
