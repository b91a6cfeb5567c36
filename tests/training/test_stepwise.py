"""Algorithm 1: the step-wise stage's schedule, initialisation, loss, and exact resume."""

import lightning as L
import pytest
import torch
from conftest import EXAMPLE_SUBJECT

from hifilight.data import SubjectDataModule
from hifilight.training import SubjectEmbeddingModule
from hifilight.training.stepwise import StepwisePlan, total_steps

SMALL = {"stage1_steps": 2, "stepwise_steps": 2, "stepwise_num_steps": 3}


def test_plan_locates_every_step():
    plan = StepwisePlan(stage1_steps=2, steps_per_timestep=2, timesteps=(667, 334, 1))
    assert plan.total_steps == 8 == total_steps(2, 2, 3)
    assert [plan.locate(s) for s in range(8)] == [None, None, (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="past the end"):
        plan.locate(8)
    off = StepwisePlan(stage1_steps=2, steps_per_timestep=0, timesteps=(667, 334, 1))
    assert off.total_steps == 2 and off.locate(5) is None


def _datamodule():
    return SubjectDataModule(EXAMPLE_SUBJECT, "dog", resolution=32)


def _trainer(max_steps, callbacks=(), root=None):
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=root,
    )


class RecordStart(L.Callback):
    """c_work as used by the forward pass of each step (after the step's initialisation)."""

    def __init__(self):
        self.used = {}

    def on_before_backward(self, trainer, module, loss):
        self.used[trainer.global_step] = module.c_work.detach().clone()


def test_each_timestep_starts_from_its_neighbour():
    L.seed_everything(0)
    module = SubjectEmbeddingModule(**SMALL, learning_rate=0.05, stepwise_learning_rate=0.05)
    rec = RecordStart()
    _trainer(8, [rec]).fit(module, _datamodule())
    assert module.stepwise_done
    assert torch.equal(rec.used[2], module.c_s.detach())  # c_s^{T+1} = c_s
    assert torch.equal(rec.used[4], module.c_s_t[0])  # first step of timestep 1 starts at timestep 0's result
    assert torch.equal(rec.used[6], module.c_s_t[1])
    assert not torch.equal(module.c_s_t[0], module.c_s_t[2])  # each timestep was optimised
    art = module.to_artifact("dog", ["a photo of a {}"], 32)
    assert torch.equal(art.c_s_t, module.c_s_t) and art.timesteps.tolist() == [667, 334, 1]


def test_stepwise_loss_goes_down_at_one_timestep_with_fixed_noise():
    torch.manual_seed(0)
    module = SubjectEmbeddingModule(stepwise_learning_rate=0.1, use_regularizer=False, stepwise_num_steps=50)
    opt = module.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    c = module.encode_captions(["a photo of a dog"])
    t = torch.tensor([module.plan.timesteps[25]])
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = module.subject_loss(module.c_work, latents, None, c, t, noise)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert module.c_s.grad is None  # stage 1's embedding is untouched
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("reset", [True, False])
def test_optimizer_reset_per_timestep_is_configurable(reset):
    module = SubjectEmbeddingModule(**SMALL, stepwise_reset_optimizer=reset)
    opt = module.configure_optimizers()
    module.c_work.grad = torch.ones_like(module.c_work)
    opt.step()
    module.reset_stepwise_optimizer(opt, global_step=5)  # (k=1, i=1): mid-timestep, never reset
    assert module.c_work in opt.state
    module.reset_stepwise_optimizer(opt, global_step=4)  # (k=1, i=0): first step of a timestep
    assert (module.c_work in opt.state) is (not reset)


@pytest.mark.parametrize("interrupt_at", [4, 5])
def test_resume_mid_stage_gives_the_same_embeddings(tmp_path, interrupt_at):
    settings = SMALL | {"stepwise_reset_optimizer": False, "learning_rate": 0.05, "stepwise_learning_rate": 0.05}
    L.seed_everything(0)
    full = SubjectEmbeddingModule(**settings)
    _trainer(8).fit(full, _datamodule())

    L.seed_everything(0)
    first = SubjectEmbeddingModule(**settings)
    trainer = _trainer(interrupt_at)
    trainer.fit(first, _datamodule())
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    assert not first.stepwise_done

    L.seed_everything(123)  # the resumed run must not depend on the global RNG
    resumed = SubjectEmbeddingModule(**settings)
    _trainer(8).fit(resumed, _datamodule(), ckpt_path=str(ckpt))
    assert resumed.stepwise_done
    assert torch.equal(resumed.c_s, full.c_s)
    assert torch.equal(resumed.c_s_t, full.c_s_t)


class RecordBatches(L.Callback):
    def __init__(self):
        self.keys = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.keys[trainer.global_step] = set(batch)


def test_stepwise_steps_load_no_pixels_and_train_the_same(monkeypatch):
    """After stage 1 the loader's batches hold only sample ids (the stage draws its views from X_0); the fit's
    embeddings equal those of a fit whose loader still loads every image."""

    def fit():
        L.seed_everything(0)
        module = SubjectEmbeddingModule(**SMALL, learning_rate=0.05, stepwise_learning_rate=0.05)
        rec = RecordBatches()
        _trainer(8, [rec]).fit(module, _datamodule())
        return module, rec.keys

    module, keys = fit()
    assert all("pixels" in keys[s] for s in (0, 1))
    assert all(keys[s] == {"sample_id", "caption"} for s in range(2, 8))
    monkeypatch.setattr(SubjectEmbeddingModule, "setup", lambda self, stage: None)
    loaded, keys = fit()
    assert all("pixels" in k for k in keys.values())
    assert torch.equal(module.c_s, loaded.c_s) and torch.equal(module.c_s_t, loaded.c_s_t)
