"""DreamBooth: the UNet (only) changes, class images are generated once and reused, the folder loads in diffusers."""

import json

import torch
from conftest import EXAMPLE_SUBJECT

from hifilight.cli import main
from hifilight.models import load_components


def _fit(tmp_path, out, *extra):
    args = [
        "fit",
        "--method",
        "dreambooth",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--data.resolution",
        "32",
        "--model.max_steps",
        "2",
        "--model.learning_rate",
        "1e-3",
        "--model.num_class_images",
        "2",
        "--model.class_steps",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path / "logs"),
        "--out",
        str(out),
        *extra,
    ]
    assert main(args) == 0


def test_dreambooth_fit_changes_only_the_unet_and_saves_a_diffusers_folder(tmp_path):
    out = tmp_path / "db"
    _fit(tmp_path, out)
    # the class images are the base model's own: kept under its weights' fingerprint
    class_dir = tmp_path / "logs" / "class_images" / load_components("tiny").fingerprint() / "dog"
    assert sorted(p.name for p in class_dir.iterdir()) == ["class_0000.png", "class_0001.png"]
    meta = json.loads((out / "hifilight.json").read_text())
    assert meta["identifier"] == "sks" and meta["class_name"] == "dog" and meta["base_model"] == "tiny"
    tuned, base = load_components(str(out)), load_components("tiny")
    changed = [n for n, p in tuned.unet.named_parameters() if not torch.equal(p, dict(base.unet.named_parameters())[n])]
    assert changed
    for name in ("vae", "text_encoder"):
        for (n, p), q in zip(getattr(tuned, name).named_parameters(), getattr(base, name).parameters(), strict=True):
            assert torch.equal(p, q), n
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert torch.equal(pipe.unet.conv_in.weight, tuned.unet.conv_in.weight)
    # a second fit reuses the class images (same files, untouched)
    stamps = {p: p.stat().st_mtime_ns for p in class_dir.iterdir()}
    _fit(tmp_path, tmp_path / "db2", "--model.prior_preservation", "true")
    assert {p: p.stat().st_mtime_ns for p in class_dir.iterdir()} == stamps


def test_existing_output_folder_is_kept(tmp_path, capsys):
    out = tmp_path / "db"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = [
        "fit",
        "--method",
        "dreambooth",
        "--data.subject_dir",
        str(EXAMPLE_SUBJECT),
        "--data.class_name",
        "dog",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep"
