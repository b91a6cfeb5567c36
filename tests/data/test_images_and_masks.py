import numpy as np
import pytest
import torch
from conftest import write_image
from PIL import Image

from hifilight.data.images import list_images, load_rgb
from hifilight.data.masks import FilesMaskProvider, FullImageMaskProvider, build_mask_provider
from hifilight.errors import HifiError


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").size == (20, 40)


@pytest.mark.parametrize("mode", ["RGBA", "L", "CMYK", "P"])
def test_modes_become_rgb(tmp_path, mode):
    path = write_image(tmp_path / ("x.jpg" if mode == "CMYK" else "x.png"), mode=mode)
    assert load_rgb(path).mode == "RGB"


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.save(tmp_path / "t.png")
    assert load_rgb(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_truncated_image_is_named(tmp_path):
    path = write_image(tmp_path / "broken.png", size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HifiError, match="broken.png: unreadable or truncated"):
        load_rgb(path)


def test_listing_errors(tmp_path):
    with pytest.raises(HifiError, match="no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(HifiError, match="no images found"):
        list_images(tmp_path)


@pytest.mark.parametrize("scale", [1, 255])
def test_mask_encodings(tmp_path, scale):
    (tmp_path / "masks").mkdir()
    arr = np.zeros((8, 8), np.uint8)
    arr[2:4, 2:6] = scale
    Image.fromarray(arr).save(tmp_path / "masks" / "a.png")
    mask = FilesMaskProvider(tmp_path / "masks")(tmp_path / "a.jpg", Image.new("RGB", (8, 8)))
    assert mask.shape == (1, 8, 8) and mask.sum() == 8 and set(mask.unique().tolist()) == {0.0, 1.0}


def test_mask_size_mismatch_is_resized_with_a_warning(tmp_path):
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "masks" / "a.png")
    with pytest.warns(UserWarning, match="resizing the mask"):
        mask = FilesMaskProvider(tmp_path / "masks")(tmp_path / "a.jpg", Image.new("RGB", (8, 6)))
    assert mask.shape == (1, 6, 8) and mask.min() == 1


def test_all_zero_mask_and_missing_mask_are_errors(tmp_path):
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / "a.png")
    provider = FilesMaskProvider(tmp_path / "masks")
    with pytest.raises(HifiError, match="all zero"):
        provider(tmp_path / "a.jpg", Image.new("RGB", (8, 8)))
    with pytest.raises(HifiError, match="no mask named b.png"):
        provider(tmp_path / "b.jpg", Image.new("RGB", (8, 8)))


def test_providers():
    assert torch.equal(FullImageMaskProvider()(None, Image.new("RGB", (3, 2))), torch.ones(1, 2, 3))
    with pytest.raises(HifiError, match="--data.masks_dir"):
        build_mask_provider("files", "nowhere", None)
    with pytest.raises(HifiError, match="unknown mask provider"):
        build_mask_provider("sam", "nowhere", None)
