"""ToySD v2's training: its world's object sizes, and a run that stops and resumes from a full checkpoint is the run
that did not stop (weights, EMA, optimizer and data position); a compact point resumes with a fresh optimizer."""

import json

import numpy as np
import pytest
import torch

from hifilight.errors import HifiError
from hifilight.models.tiny import sd14_ddim_scheduler
from hifilight.toyworld import scenes, toyclip, world
from hifilight.toyworld.scenes import ToyObject
from hifilight.toyworld.tokenizer import toy_tokenizer
from hifilight.toyworld.toysd2 import TrainArgs, Trainer, toy_unet


def test_v1_scenes_are_drawn_as_before_and_v2_objects_are_larger():
    obj = ToyObject("star", "red")
    rng, old = np.random.default_rng(7), np.random.default_rng(7)
    scene = scenes.random_scene(rng, obj)
    scale = old.uniform(0.3, 0.5)  # the v1 draw, as it always was
    x, y = old.uniform(-0.9 + scale, 0.9 - scale, 2)
    assert (scene.scale, scene.x, scene.y) == (scale, x, y)
    try:
        world.use("v2")
        rng = np.random.default_rng(0)
        sizes = np.array([scenes.random_scene(rng, obj).scale for _ in range(2000)])
    finally:
        world.use("v1")
    assert sizes.min() >= 0.3 and sizes.max() <= 0.7
    assert abs((sizes >= 0.45).mean() - 0.8) < 0.03  # most fill 45-70% of the frame width
    assert scenes.current_sizes() == "v1" and world.weights_dir() == world.ASSETS
    with pytest.raises(ValueError, match="unknown ToyWorld"):
        world.use("v3")


@pytest.fixture(scope="module")
def parts():
    tokenizer = toy_tokenizer()
    text = toyclip.text_encoder(toyclip.build(tokenizer, seed=1))
    latents = torch.randn(16, 16, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3
    objs = [ToyObject("star", "red"), ToyObject("ring", "blue", "dotted", "white")]
    rng = np.random.default_rng(0)
    corpus = [scenes.random_scene(rng, objs[i % 2]) for i in range(16)]
    return tokenizer, text, latents, corpus


def _trainer(parts, tmp_path, **kw) -> Trainer:
    tokenizer, text, latents, corpus = parts
    torch.manual_seed(0)
    comps = {"unet": toy_unet(), "text_encoder": text, "tokenizer": tokenizer, "scheduler": sd14_ddim_scheduler(),
             "vae": type("V", (), {"config": type("C", (), {"scaling_factor": 1.0})()})()}  # fmt: skip
    args = TrainArgs(out=tmp_path, batch=2, warmup=2, **kw)
    return Trainer(args, comps, latents, corpus, "cpu")


def _same(a: Trainer, b: Trainer) -> bool:
    weights = all(torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters(), strict=True))
    ema = all(torch.equal(p, q) for p, q in zip(a.ema.shadow_params, b.ema.shadow_params, strict=True))
    return weights and ema


def test_a_resumed_run_is_the_run_that_did_not_stop(parts, tmp_path):
    straight = _trainer(parts, tmp_path)
    for _ in range(4):
        straight.train_step()
    first = _trainer(parts, tmp_path)
    for _ in range(2):
        first.train_step()
    first.save_checkpoint(tmp_path / "checkpoint")
    resumed = _trainer(parts, tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint")
    assert resumed.step == 2 and resumed.warm_from == 0
    for _ in range(2):
        resumed.train_step()
    assert _same(straight, resumed)
    assert not _same(straight, first)  # the comparison can fail: two steps fewer differ


def test_a_compact_point_keeps_half_precision_weights_and_restarts_the_optimizer(parts, tmp_path):
    run = _trainer(parts, tmp_path)
    for _ in range(3):
        run.train_step()
    run.save_checkpoint(tmp_path / "compact", compact=True)
    assert not (tmp_path / "compact" / "optimizer.safetensors").exists()
    state = json.loads((tmp_path / "compact" / "state.json").read_text())
    assert state["compact"] and state["step"] == 3
    back = _trainer(parts, tmp_path)
    back.load_checkpoint(tmp_path / "compact")
    assert back.step == 3 and back.warm_from == 3 and not back.opt.state  # a fresh AdamW, warm-up from here
    for p, q in zip(run.unet.parameters(), back.unet.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-3, rtol=1e-3)  # fp16 rounding of the weights only
    back.train_step()
    assert back.opt.param_groups[0]["lr"] == pytest.approx(back.args.lr / 2)  # step 1 of a 2-step warm-up


def test_a_compact_point_of_the_ema_alone_restarts_the_raw_weights_from_it(parts, tmp_path):
    run = _trainer(parts, tmp_path)
    for _ in range(3):
        run.train_step()
    run.save_checkpoint(tmp_path / "compact", compact=True)
    (tmp_path / "compact" / "unet.safetensors").unlink()  # what --compact_weights ema leaves out
    back = _trainer(parts, tmp_path)
    back.load_checkpoint(tmp_path / "compact")
    for p, q in zip(back.unet.parameters(), back.ema.shadow_params, strict=True):
        assert torch.equal(p, q)  # the raw weights are the EMA's
    for p, q in zip(run.ema.shadow_params, back.ema.shadow_params, strict=True):
        assert torch.allclose(p, q, atol=1e-3, rtol=1e-3)
    assert not all(torch.equal(p, q) for p, q in zip(run.unet.parameters(), back.unet.parameters(), strict=True))


def test_bad_options_are_one_line_errors_naming_the_flag(tmp_path):
    with pytest.raises(HifiError, match="--batch must be >= 1"):
        TrainArgs(out=tmp_path, batch=0).check()
    with pytest.raises(HifiError, match="--ema_max_decay"):
        TrainArgs(out=tmp_path, ema_max_decay=1.0).check()
    with pytest.raises(HifiError, match="--compact_weights must be both or ema"):
        TrainArgs(out=tmp_path, compact_weights="raw").check()


@pytest.mark.slow  # ~1 min: readers, ToyCLIP and a UNet step or two, end to end (make test-all)
def test_the_command_trains_compacts_and_resumes_from_the_compact_point(tmp_path):
    import shutil

    from hifilight.cli import main

    small = ["--images", "64", "--clip_steps", "2", "--clip_batch", "16", "--reader_steps", "2", "--batch", "2",
             "--curve_every", "0", "--threads", "2"]  # fmt: skip
    first = tmp_path / "first"
    assert main(["toyworld", "train", "toysd2", "--out", str(first), "--unet_steps", "2", *small]) == 0
    assert main(["toyworld", "train", "toysd2", "--out", str(first), "--unet_steps", "2", *small]) == 2  # no resume
    compact = tmp_path / "compact"
    assert main(["toyworld", "train", "toysd2", "--out", str(first), "--compact_to", str(compact)]) == 0
    assert not (compact / "checkpoint" / "optimizer.safetensors").exists() and (compact / "toyclip").is_dir()
    half = tmp_path / "half"
    args = ["toyworld", "train", "toysd2", "--out", str(first), "--compact_to", str(half), "--compact_weights", "ema"]
    assert main(args) == 0
    assert sorted(p.name for p in (half / "checkpoint").iterdir()) == ["ema.safetensors", "state.json"]
    (half / "README.md").write_text("how to resume\n")
    assert main(args) == 0  # written again over the same folder: its note stays
    assert (half / "README.md").read_text() == "how to resume\n"
    assert json.loads((compact / "readers.json").read_text())["toysam_mean_iou"] > 0  # the readers' record travels
    again = tmp_path / "again"
    shutil.copytree(compact, again)
    args = ["toyworld", "train", "toysd2", "--out", str(again), "--resume", "true", "--unet_steps", "3", *small]
    assert main(args) == 0
    state = json.loads((again / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["warm_from"] == 2 and not state["compact"]
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(again / "toysd", safety_checker=None, requires_safety_checker=False)
    assert pipe.text_encoder.config.hidden_size == toyclip.TEXT_HIDDEN
    assert json.loads((again / "toysd" / "training.json").read_text())["unet_steps_done"] == 3
