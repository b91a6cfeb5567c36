"""GrabCut masks: exact on a synthetic scene, sensible on real photos, written and read back unchanged."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hifilight.cli import main
from hifilight.data.masks import FilesMaskProvider, build_mask_provider
from hifilight.perception.grabcut import grabcut

DREAMBENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "dreambench"


def synthetic_scene(size=128, seed=0):
    """A red disc on a textured grey-green background, and its true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = (yy - size * 0.52) ** 2 + (xx - size * 0.47) ** 2 < (size * 0.27) ** 2
    background = np.stack([90 + 40 * np.sin(xx / 5.0), 120 + 30 * np.cos(yy / 7.0), np.full((size, size), 90.0)], -1)
    background += rng.normal(0, 12, background.shape)
    disc = np.array([200.0, 40.0, 50.0]) + rng.normal(0, 10, (size, size, 3))
    rgb = np.where(truth[..., None], disc, background).clip(0, 255).astype(np.uint8)
    return rgb, truth


def test_synthetic_object_is_segmented():
    rgb, truth = synthetic_scene()
    mask = grabcut(rgb)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou >= 0.9, iou


def test_box_initialisation():
    rgb, truth = synthetic_scene()
    ys, xs = np.nonzero(truth)
    mask = grabcut(rgb, box=(xs.min() - 4, ys.min() - 4, xs.max() + 4, ys.max() + 4))
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.9


@pytest.mark.skipif(not DREAMBENCH.is_dir(), reason="shared DreamBench photos not present")
@pytest.mark.parametrize("subject", ["teapot", "backpack", "rc_car"])
def test_real_photos_get_non_degenerate_masks(subject):
    provider = build_mask_provider("grabcut", DREAMBENCH / subject, None)
    path = DREAMBENCH / subject / "00.jpg"
    mask = provider(path, Image.open(path).convert("RGB"))
    assert mask.shape == (1, 512, 512) and mask.dtype == torch.float32
    assert 0.03 < mask.mean().item() < 0.9


def test_masks_command_writes_what_the_files_provider_reads(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(2):
        Image.fromarray(synthetic_scene(96, seed)[0]).save(photos / f"{seed:02d}.png")
    out = tmp_path / "masks"
    args = ["masks", "--data.subject_dir", str(photos), "--data.class_name", "ball", "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "01.png", "overlay.png"]
    reader = FilesMaskProvider(out)
    for seed in range(2):
        written = np.asarray(Image.open(out / f"{seed:02d}.png"))
        assert set(np.unique(written)) <= {0, 255}
        image = Image.open(photos / f"{seed:02d}.png")
        fresh = build_mask_provider("grabcut", photos, None)(photos / f"{seed:02d}.png", image)
        assert torch.equal(reader(photos / f"{seed:02d}.png", image), fresh)
    assert main(args) == 2 and "already exists" in capsys.readouterr().err


def test_suspicious_coverage_is_flagged(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), "gray").save(photos / "a.png")
    assert main(["masks", "--data.subject_dir", str(photos), "--masks", "none", "--out", str(tmp_path / "m")]) == 0
    assert "covers 100.0%" in capsys.readouterr().err


def test_grabcut_warnings_are_one_line_each_in_hifilight_words(tmp_path):
    """Python's default warning display ends with the source line that raised it; the CLI shows one line each."""
    import os
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), "gray").save(photos / "a.png")  # nothing for GrabCut to find
    args = ["masks", "--data.subject_dir", str(photos), "--data.class_name", "ball", "--out", str(tmp_path / "m")]
    run = subprocess.run(
        [sys.executable, "-m", "hifilight.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "hifilight: warning: a.png: GrabCut found no subject; using the centre box instead" in lines
    assert not any(line.startswith(" ") for line in lines), lines  # no indented source lines
