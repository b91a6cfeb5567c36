import pytest
import torch

from hifilight.training import SubjectEmbeddingModule


def _batch(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    c = module.encode_captions(["a photo of a dog", "a photo of a dog"])
    return latents, mask, c, torch.tensor([100, 700]), torch.randn(2, 4, 8, 8, generator=g)


def test_c_s_starts_at_the_null_tail():
    module = SubjectEmbeddingModule(num_tokens=5)
    assert module.c_s.shape == (5, 32)
    assert torch.equal(module.c_s.detach(), module.phi[0, -5:])
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["c_s", "c_work"]


def test_regularizer_term_matches_eq6():
    module = SubjectEmbeddingModule(reg_weight=0.5)
    with torch.no_grad():
        module.c_s.add_(0.1)
    out = module.subject_loss(module.c_s, *_batch(module))
    expected_reg = (0.1**2) * module.c_s.numel()
    assert torch.allclose(out["reg"], torch.tensor(expected_reg), rtol=1e-4)
    assert torch.allclose(out["loss"], out["diffusion"] + 0.5 * out["reg"])
    module.hparams.use_regularizer = False
    out = module.subject_loss(module.c_s, *_batch(module))
    assert torch.equal(out["loss"], out["diffusion"])


def test_only_c_s_receives_gradients():
    module = SubjectEmbeddingModule()
    module.subject_loss(module.c_s, *_batch(module))["loss"].backward()
    assert module.c_s.grad is not None and module.c_s.grad.abs().sum() > 0
    for name in ("unet", "vae", "text_encoder"):
        assert all(p.grad is None for p in getattr(module, name).parameters())


def test_mask_switch_changes_the_loss():
    module = SubjectEmbeddingModule()
    batch = _batch(module)
    masked = module.subject_loss(module.c_s, *batch)["diffusion"]
    module.hparams.use_mask = False
    unmasked = module.subject_loss(module.c_s, *batch)["diffusion"]
    assert not torch.allclose(masked, unmasked)


def test_training_lowers_the_loss_on_a_fixed_batch():
    # Random weights respond weakly to the conditioning, so this uses a large lr and no regulariser (whose pull
    # would dominate): the point is that the optimisation of Eq. (5) moves c_s downhill.
    torch.manual_seed(0)
    module = SubjectEmbeddingModule(learning_rate=0.1, use_regularizer=False)
    batch = _batch(module)
    opt = module.configure_optimizers()
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = module.subject_loss(module.c_s, *batch)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0], losses


def test_checkpoint_keeps_only_trained_tensors():
    module = SubjectEmbeddingModule()
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    assert sorted(ckpt["state_dict"]) == ["c_s", "c_s_t", "c_work", "stepwise_timesteps"]


def test_latent_cache_reuses_encodings():
    module = SubjectEmbeddingModule()
    pixels, masks = torch.rand(2, 3, 64, 64) * 2 - 1, torch.ones(2, 1, 64, 64)
    first, first_mask = module.encode_latents(pixels, masks, ["0:0", ""])
    assert first.shape == (2, 4, 8, 8) and first_mask.shape == (2, 1, 8, 8)
    # a cached key ignores new pixels and masks; an uncacheable sample is encoded afresh
    again, again_mask = module.encode_latents(torch.zeros_like(pixels), torch.zeros_like(masks), ["0:0", ""])
    assert torch.equal(first[0], again[0]) and torch.equal(first_mask[0], again_mask[0])
    assert not torch.equal(first[1], again[1])
    assert list(module._latent_cache.entries) == ["0:0"]


def test_drift_is_the_distance_from_phi_s_and_is_stored_in_the_artifact():
    module = SubjectEmbeddingModule(num_tokens=2)
    with torch.no_grad():
        module.c_s.add_(0.5)  # every one of the 2 x 32 entries moves 0.5: distance 0.5 * 8
    drift = module.drift()
    assert drift["c_s"] == pytest.approx(4.0, rel=1e-5)
    assert drift["c_s_rel"] == pytest.approx(4.0 / float(module.phi_s.norm()), rel=1e-5)
    art = module.to_artifact("dog", ["a photo of a {}"], 64)
    assert art.metadata["training"]["drift"]["c_s"] == pytest.approx(4.0, rel=1e-5)


@pytest.mark.parametrize(("shift", "expected"), [(0.0, "moved only"), (1e3, "may override the prompt"), (0.3, None)])
def test_drift_warning_fires_on_a_pinned_and_on_a_runaway_embedding(shift, expected):
    module = SubjectEmbeddingModule(num_tokens=2)
    with torch.no_grad():
        module.c_s.add_(shift)
    message = module.drift_warning()
    if expected is None:
        assert message is None
    else:
        assert expected in message and "--model.reg_weight" in message
