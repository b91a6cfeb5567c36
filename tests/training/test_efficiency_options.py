"""Gradient checkpointing and attention choices keep the math; bf16 autocast runs every module, weights stay fp32."""

import lightning as L
import pytest
import torch
from conftest import EXAMPLE_SUBJECT

from hifilight.data import SubjectDataModule
from hifilight.errors import HifiError
from hifilight.training import SubjectEmbeddingModule
from hifilight.training.dreambooth import DreamBoothModule
from hifilight.training.textual_inversion import TextualInversionModule


def _subject_grad(**kwargs):
    module = SubjectEmbeddingModule(**kwargs)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    c = module.encode_captions(["a photo of a dog", "a dog"])
    out = module.subject_loss(module.c_s, latents, torch.ones(2, 1, 8, 8), c, torch.tensor([10, 700]), noise)
    out["loss"].backward()
    return out["loss"].detach(), module.c_s.grad.clone()


@pytest.mark.parametrize("options", [{"gradient_checkpointing": True}, {"attention": "classic"}])
def test_options_give_the_same_loss_and_gradients(options):
    loss, grad = _subject_grad()
    loss2, grad2 = _subject_grad(**options)
    assert torch.allclose(loss, loss2, atol=1e-6) and torch.allclose(grad, grad2, atol=1e-6, rtol=1e-4)


def test_checkpointing_is_on_for_the_unet_blocks():
    module = DreamBoothModule(gradient_checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in module.unet.modules())
    with pytest.raises(HifiError, match="--model.attention"):
        SubjectEmbeddingModule(attention="flash9")


@pytest.mark.parametrize(
    ("module", "trained"),
    [
        (lambda: SubjectEmbeddingModule(stage1_steps=2, stepwise_steps=1, stepwise_num_steps=1), "c_s"),
        (lambda: TextualInversionModule(max_steps=3), "vectors"),
        (lambda: DreamBoothModule(max_steps=3, prior_preservation=False), "unet.conv_in.weight"),
    ],
)
def test_bf16_autocast_trains_with_fp32_weights(module, trained, tmp_path):
    module = module()
    dm = SubjectDataModule(EXAMPLE_SUBJECT, "dog", masks="none", resolution=32)
    before = module.get_parameter(trained).detach().clone()
    L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
    ).fit(module, dm)
    after = module.get_parameter(trained)
    assert after.dtype == torch.float32 and torch.isfinite(after).all() and not torch.equal(after, before)
