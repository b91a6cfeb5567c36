import pytest
import torch
from conftest import sd_pipeline

from hifilight.errors import HifiError
from hifilight.models import load_components
from hifilight.models.tiny import build_tiny


def test_tiny_is_seeded_frozen_and_sd14_scheduled(tiny):
    again = build_tiny()
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(tiny, name).state_dict(), again[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        module = getattr(tiny, name)
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    cfg = tiny.scheduler.config
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert (cfg.steps_offset, cfg.clip_sample, cfg.set_alpha_to_one) == (1, False, False)
    assert tiny.vae_scale_factor == 8


def test_local_folder_loads_through_from_pretrained(tiny, tmp_path, monkeypatch):
    pipe = sd_pipeline(**tiny.__dict__)
    pipe.save_pretrained(tmp_path / "sd")
    calls = []
    from diffusers import UNet2DConditionModel

    original = UNet2DConditionModel.from_pretrained.__func__
    monkeypatch.setattr(
        UNet2DConditionModel,
        "from_pretrained",
        classmethod(lambda cls, *a, **k: calls.append(a) or original(cls, *a, **k)),
    )
    loaded = load_components(str(tmp_path / "sd"))
    assert calls and calls[0][0] == str(tmp_path / "sd")
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(tiny, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    text = "a photo of a dog"
    assert tiny.tokenizer(text).input_ids == loaded.tokenizer(text).input_ids
    assert loaded.scheduler.config.steps_offset == 1 and loaded.name == str(tmp_path / "sd")


def test_dtype_is_applied():
    comps = load_components("tiny", dtype="bfloat16")
    assert comps.unet.dtype == torch.bfloat16 and comps.text_encoder.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("pretrained", "match"),
    [("no/such/path", "no such folder and not a hub id"), ("./missing-dir", "no such folder")],
)
def test_unknown_path_is_a_clear_error(pretrained, match):
    with pytest.raises(HifiError, match=match):
        load_components(pretrained)


def test_folder_without_unet_is_a_clear_error(tmp_path):
    with pytest.raises(HifiError, match="no unet/ subfolder"):
        load_components(str(tmp_path))


def test_uncached_hub_id_offline_is_a_clear_error():
    with pytest.raises(HifiError, match="could not load"):
        load_components("hifilight-test/definitely-not-cached")


def test_unknown_dtype():
    with pytest.raises(HifiError, match="--model.dtype"):
        load_components("tiny", dtype="float8")


def test_fingerprint_names_the_weights_not_the_load():
    a, b = load_components("tiny"), load_components("tiny")
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 16
    with torch.no_grad():
        b.vae.decoder.conv_out.bias[0] += 1e-3
    assert a.fingerprint() != b.fingerprint()
