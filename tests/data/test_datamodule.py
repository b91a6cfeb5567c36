import pytest
import torch

from hifilight.data import SubjectDataModule
from hifilight.errors import HifiError


def test_batches_have_pixels_masks_captions_and_cache_keys(subject_dir):
    dm = SubjectDataModule(subject_dir, "dog", resolution=32, batch_size=2, caption_templates=["a {} photo"])
    assert dm.mask_provider.name == "files"  # auto: masks/ exists
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixels"].shape == (2, 3, 32, 32) and batch["pixels"].min() >= -1 and batch["pixels"].max() <= 1
    assert batch["mask"].shape == (2, 1, 32, 32)
    assert 0 < batch["mask"].mean() < 1
    assert batch["caption"] == ["a dog photo", "a dog photo"]
    assert all(k.split(":")[1] in ("0", "1") for k in batch["cache_key"])


def test_flip_moves_image_and_mask_together(subject_dir):
    dm = SubjectDataModule(subject_dir, "dog", resolution=32, flip_p=1.0)
    dm.setup()
    ds = dm.train_dataloader().dataset
    flipped = ds[0]
    ds.flip_p = 0.0
    plain = ds[0]
    assert torch.equal(flipped["pixels"], plain["pixels"].flip(-1))
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))
    assert (flipped["cache_key"], plain["cache_key"]) == ("0:1", "0:0")


def test_random_crop_is_not_cached(subject_dir):
    dm = SubjectDataModule(subject_dir, "dog", resolution=16, crop="random", crop_scale=0.5, masks="none")
    dm.setup()
    item = dm.train_dataloader().dataset[1]
    assert item["cache_key"] == "" and item["pixels"].shape == (3, 16, 16) and item["mask"].min() == 1


def test_real_photos_load(tmp_path):
    from conftest import EXAMPLE_SUBJECT

    dm = SubjectDataModule(EXAMPLE_SUBJECT, "dog", resolution=64)
    dm.setup()
    assert len(dm.images) == 5 and dm.mask_provider.name == "grabcut"  # auto: no mask files, no SAM weights here


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 30}, "--data.resolution"),
        ({"flip_p": 2.0}, "--data.flip_p"),
        ({"class_name": " "}, "--data.class_name"),
        ({"caption_templates": ["a beach"]}, "no subject placeholder"),
        ({"masks": "files", "masks_dir": "/nonexistent"}, "--data.masks_dir"),
    ],
)
def test_bad_settings(subject_dir, kwargs, match):
    args = {"subject_dir": subject_dir, "class_name": "dog"} | kwargs
    with pytest.raises(HifiError, match=match):
        SubjectDataModule(**args)


def test_grabcut_masks_in_training_data():
    from conftest import EXAMPLE_SUBJECT

    dm = SubjectDataModule(EXAMPLE_SUBJECT, "dog", resolution=64, masks="grabcut")
    dm.setup()
    coverage = [img.mask.mean().item() for img in dm.images]
    assert dm.mask_provider.name == "grabcut" and all(0.02 < c < 0.95 for c in coverage), coverage


def test_samples_past_index_only_from_carry_only_their_id(subject_dir):
    dm = SubjectDataModule(subject_dir, "dog", masks="files", resolution=32)
    full = dm.dataset(8)
    dm.index_only_from = 4
    part = dm.dataset(8)
    for n in range(4):
        assert torch.equal(part[n]["pixels"], full[n]["pixels"]) and part[n]["caption"] == full[n]["caption"]
    assert part[4] == {"sample_id": 4, "caption": ""} and part[7]["sample_id"] == 7
