"""ToyWorld generator: deterministic per seed, masks are exactly the drawn object, subjects held out."""

import numpy as np
import pytest
from PIL import Image

from hifilight.cli import main
from hifilight.evaluation.dreambench import load_dreambench
from hifilight.evaluation.dreambench import render as render_prompt
from hifilight.toyworld.dataset import (
    PROMPTS,
    SUBJECTS,
    VALIDATION_SUBJECTS,
    pretraining_objects,
    split_names,
    write_dataset,
)
from hifilight.toyworld.scenes import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    Scene,
    ToyObject,
    background,
    random_scene,
    render,
)


def test_same_scene_same_pixels_and_seed_changes_texture():
    scene = Scene(ToyObject("star", "blue", "dotted", "yellow"), "snow", 0.1, -0.2, 0.4, 0.7, seed=3)
    a, ma = render(scene)
    b, mb = render(scene)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    c, mc = render(Scene(scene.obj, "snow", 0.1, -0.2, 0.4, 0.7, seed=4))
    assert np.array_equal(ma, mc) and not np.array_equal(a, c)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pattern", ["plain", "striped", "dotted", "checkered"])
def test_mask_is_exactly_the_drawn_object(shape, pattern):
    rng = np.random.default_rng(0)
    obj = ToyObject(shape, "red", pattern, "yellow")
    for name in BACKGROUNDS:
        scene = random_scene(rng, obj, name)
        image, mask = render(scene, 64)
        assert 40 < mask.sum() < 64 * 64 * 0.6  # visible, not the whole frame
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())  # inside the frame
        outside = background(name, 64, scene.seed).round().astype(np.uint8)
        assert np.array_equal(image[~mask], outside[~mask])
        colours = {tuple(c) for c in image[mask]}
        assert colours <= {COLORS["red"], COLORS["yellow"]} and (COLORS["red"] in colours)
        if pattern != "plain":
            assert COLORS["yellow"] in colours


def test_captions_and_held_out_subjects():
    assert (
        Scene(ToyObject("star", "blue", "dotted", "yellow"), "snow").caption
        == "a blue star with yellow dots in the snow"
    )
    assert Scene(ToyObject("ring", "red"), "beach").caption == "a red ring on the beach"
    objects = pretraining_objects()
    assert not set(SUBJECTS.values()) & set(objects)
    assert not set(VALIDATION_SUBJECTS.values()) & set(objects)  # validation subjects are held out too
    assert not set(VALIDATION_SUBJECTS.values()) & set(SUBJECTS.values()) and len(VALIDATION_SUBJECTS) == 8
    assert ToyObject("star", "blue", "dotted", "red") in objects  # same shape and colour, other dots: seen
    assert len(objects) == len(set(objects)) == 6 * 8 * (1 + 3 * 7) - 16


def test_dataset_reads_as_dreambench_and_masks_match(tmp_path):
    names = ["blue_star_yellow_dots", "red_heart_white_stripes"]
    write_dataset(tmp_path, names, photos=3, size=32)
    bench = load_dreambench(tmp_path)
    assert [(s.name, s.class_name) for s in bench] == [
        ("blue_star_yellow_dots", "star"),
        ("red_heart_white_stripes", "heart"),
    ]
    assert (
        len(bench[0].prompts) == len(PROMPTS) and render_prompt(bench[0].prompts[1], "", "star") == "a star in the snow"
    )
    folder = tmp_path / names[0]
    for i in range(3):
        image = np.asarray(Image.open(folder / f"{i:02d}.png"))
        mask = np.asarray(Image.open(folder / "masks" / f"{i:02d}.png")) > 0
        assert image.shape == (32, 32, 3) and mask.any()
        assert {tuple(c) for c in image[mask]} <= {COLORS["blue"], COLORS["yellow"]}


def test_dataset_command(tmp_path, capsys):
    assert (
        main(
            [
                "toyworld",
                "dataset",
                "--out",
                str(tmp_path / "t"),
                "--photos",
                "2",
                "--size",
                "32",
                "--subjects",
                '["white_star_red_stripes"]',
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "t" / "white_star_red_stripes").glob("*.png"))) == 2
    assert (
        main(
            [
                "toyworld",
                "dataset",
                "--out",
                str(tmp_path / "t"),
                "--photos",
                "2",
                "--size",
                "32",
                "--subjects",
                '["white_star_red_stripes"]',
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert main(["toyworld", "dataset", "--out", str(tmp_path / "u"), "--subjects", '["nope"]']) == 2
    assert main(["toyworld", "train"]) == 2  # which trainer is not said
    assert "choose a trainer" in capsys.readouterr().err


def test_dataset_writes_either_split_and_a_subject_keeps_its_photos_in_any_subset(tmp_path):
    val = write_dataset(tmp_path / "val", split="val")
    assert [f.name for f in val] == split_names("val") == list(VALIDATION_SUBJECTS)
    assert "val split" in (tmp_path / "val" / "README.md").read_text()
    whole = write_dataset(tmp_path / "test")
    alone = write_dataset(tmp_path / "one", ["white_star_red_stripes"])
    assert (whole[6] / "00.png").read_bytes() == (alone[0] / "00.png").read_bytes()
    with pytest.raises(ValueError, match="unknown split"):
        write_dataset(tmp_path / "x", split="train")
