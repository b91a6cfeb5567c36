"""LoRA subjects: only the adapters train, the file is diffusers' LoRA layout, and diffusers' `load_lora_weights`
gives the same model `hifilight predict` samples from."""

import json

import pytest
import torch
from conftest import EXAMPLE_SUBJECT, sd_pipeline
from safetensors import safe_open

from hifilight.cli import main
from hifilight.models import load_components
from hifilight.subjects import load_subject


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    out = tmp / "dog.safetensors"
    args = [
        "fit",
        "--method",
        "lora",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--model.max_steps",
        "3",
        "--model.learning_rate",
        "0.05",
        "--model.rank",
        "2",
        "--model.num_class_images",
        "2",
        "--model.class_steps",
        "2",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp / "logs"),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out


def test_the_file_holds_only_unet_adapters_and_hifilights_metadata(fitted):
    with safe_open(str(fitted), "pt") as f:
        keys, meta = list(f.keys()), json.loads(f.metadata()["hifilight"])
    assert keys and all(k.startswith("unet.") and ".lora." in k for k in keys)  # diffusers' LoRA key layout
    assert (meta["format"], meta["identifier"], meta["class_name"], meta["rank"]) == ("hifilight.lora", "sks", "dog", 2)
    unet_size = sum(p.numel() for p in load_components("tiny").unet.parameters())
    with safe_open(str(fitted), "pt") as f:
        assert sum(f.get_tensor(k).numel() for k in keys) < unet_size / 10


def test_diffusers_load_lora_weights_gives_the_model_hifilight_samples_from(fitted):
    subject = load_subject(fitted)
    assert (subject.kind, subject.word) == ("lora", "sks dog")
    ours, base = load_components("tiny"), load_components("tiny")
    subject.prepare(ours)
    pipe = sd_pipeline(
        **{k: getattr(load_components("tiny"), k) for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    )
    pipe.load_lora_weights(str(fitted))
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        a = ours.unet(x, 500, encoder_hidden_states=c).sample
        b = pipe.unet(x, 500, encoder_hidden_states=c).sample
        plain = base.unet(x, 500, encoder_hidden_states=c).sample
    assert torch.allclose(a, b, atol=1e-6)
    assert (a - plain).abs().max() > 1e-4  # the adapters trained away from zero


def test_predict_samples_a_lora_subject_and_bad_settings_are_one_line(fitted, tmp_path, capsys):
    args = [
        "predict",
        "--subject",
        str(fitted),
        "--prompts",
        '["a {} on the beach"]',
        "--steps",
        "2",
        "--resolution",
        "32",
        "--out_dir",
        str(tmp_path / "p"),
    ]
    assert main(args) == 0 and (tmp_path / "p" / "grid.png").is_file()
    capsys.readouterr()
    bad = [
        "fit",
        "--method",
        "lora",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--model.rank",
        "0",
        "--out",
        str(tmp_path / "x.safetensors"),
    ]
    assert main(bad) == 2 and "--model.rank must be >= 1" in capsys.readouterr().err


def test_unknown_target_modules_and_a_missing_peft_are_one_line_errors(monkeypatch):
    import sys

    from hifilight.errors import HifiError
    from hifilight.training.lora import LoRAModule

    with pytest.raises(HifiError, match="--model.target_modules"):
        LoRAModule(pretrained="tiny", target_modules=["no_such_layer"])
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(HifiError, match=r"pip install 'hifilight\[lora\]'"):
        LoRAModule(pretrained="tiny")


def test_kohya_export_loads_in_diffusers_as_the_same_adapters(fitted, tmp_path, capsys):
    from hifilight.export.lora import kohya_state_dict

    out = tmp_path / "dog_kohya.safetensors"
    assert main(["export", "lora", "--subject", str(fitted), "--out", str(out)]) == 0
    assert "in kohya's layout" in capsys.readouterr().out
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert all(
        k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys
    )
    assert meta["ss_network_dim"] == "2" and meta["ss_network_alpha"] == "2"
    outputs = []
    for path in (fitted, out):
        pipe = sd_pipeline(
            **{
                k: getattr(load_components("tiny"), k)
                for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
            }
        )
        pipe.load_lora_weights(str(path))
        g = torch.Generator().manual_seed(0)
        x, c = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 77, 32, generator=g)
        with torch.no_grad():
            outputs.append(pipe.unet(x, 500, encoder_hidden_states=c).sample)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    # the trained alpha is written, not the rank: the adapter's scale alpha / rank is kept
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora"
    state = {f"{key}.down.weight": torch.ones(2, 8), f"{key}.up.weight": torch.ones(8, 2)}
    assert {float(v) for k, v in kohya_state_dict(state, 8.0).items() if k.endswith(".alpha")} == {8.0}
    assert main(["export", "lora", "--subject", str(fitted), "--out", str(out)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err


def test_lora_declares_the_prior_preservation_options_as_dreambooth_does():
    """The one duplicate LightningCLI's flat flags need: same names, defaults and help in both modules."""
    import inspect

    from docstring_parser import parse

    from hifilight.training.dreambooth import DreamBoothModule
    from hifilight.training.lora import LoRAModule

    prior = ("prior_preservation", "prior_loss_weight", "num_class_images", "class_dir", "class_prompt",
             "class_steps", "class_guidance")  # fmt: skip
    signatures = [inspect.signature(m.__init__).parameters for m in (DreamBoothModule, LoRAModule)]
    docs = [
        {p.arg_name: p.description for p in parse(m.__init__.__doc__).params} for m in (DreamBoothModule, LoRAModule)
    ]
    for name in prior:
        assert signatures[0][name].default == signatures[1][name].default, name
        assert signatures[0][name].annotation == signatures[1][name].annotation, name
        assert docs[0][name] == docs[1][name], name


def test_lora_and_dreambooth_on_one_base_model_share_its_class_images_and_another_base_does_not():
    from hifilight.models import load_components
    from hifilight.training.dreambooth import DreamBoothModule
    from hifilight.training.lora import LoRAModule

    base = load_components("tiny").fingerprint()
    lora = LoRAModule(pretrained="tiny", rank=2)  # its adapters are added after the fingerprint is taken
    assert DreamBoothModule(pretrained="tiny")._base_fingerprint == lora._base_fingerprint == base
    assert DreamBoothModule(pretrained="toysd")._base_fingerprint not in (None, base)
    assert DreamBoothModule(pretrained="tiny", class_dir="mine")._base_fingerprint is None  # the user's folder
