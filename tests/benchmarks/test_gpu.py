"""benchmarks/gpu.py --quick: the GPU benchmark's code, run on the tiny preset so that it cannot rot before a GPU run.
It checks the report's shape and invariants, never a time."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sys.path.insert(0, str(ROOT))  # benchmarks is a package at the repository root, run with python -m
    from benchmarks import gpu

    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    gpu.main(["--quick", "--device", "cpu", "--out", str(out)])
    return json.loads(out.read_text()), gpu.QUICK


def test_every_part_is_measured_next_to_its_plain_loop(report):
    data, quick = report
    parts = data["configs"]
    assert data["device"] == "cpu" and data["dtype"] == "fp32" and data["sizes"]["preset"] == "tiny"
    for entry in (parts["stage1"]["step"], parts["stage1"]["bare_unet_fwd_bwd"], parts["generate"]["hifilight"],
                  parts["generate"]["diffusers_pipeline"], parts["guidance"]["null_text"]["plain_loop"],
                  parts["guidance"]["reference"]["both_branches_every_inner_step"]):  # fmt: skip
        assert entry["median_ms"] > 0 and entry["min_ms"] <= entry["median_ms"]
    assert parts["stage1"]["ratio"] == round(
        parts["stage1"]["step"]["median_ms"] / parts["stage1"]["bare_unet_fwd_bwd"]["median_ms"], 3
    )  # noqa: E501
    assert (parts["stepwise"]["T"], parts["stepwise"]["I"]) == tuple(quick.stepwise)
    assert parts["guidance"]["reference"]["J"] == quick.inner and parts["guidance"]["null_text"]["K"] == quick.inner


def test_cuda_only_variants_are_skipped_on_cpu_and_the_rest_compared_to_sdpa(report):
    unet = report[0]["configs"]["unet"]
    assert "CUDA only" in unet["compile"]["skipped"] and "CUDA only" in unet["compile_cudagraphs"]["skipped"]
    assert unet["sdpa"]["vs_sdpa"] == 1.0 and unet["classic_attention"]["vs_sdpa"] > 0


def test_the_pipeline_is_the_sum_of_its_measured_parts(report):
    data, quick = report
    p, parts = data["configs"]["pipeline"], data["configs"]
    assert p["stage1_s"] == round(quick.stage1_steps * parts["stage1"]["step"]["median_ms"] / 1000, 1)
    assert p["stepwise_s"] == parts["stepwise"]["wall_s"]
    # total, stage 1 and guided generation are each rounded to 0.1 s from unrounded sums: up to 3 x 0.05 apart
    assert p["total_s"] == pytest.approx(p["stage1_s"] + p["stepwise_s"] + p["guided_generation_s"], abs=0.151)
