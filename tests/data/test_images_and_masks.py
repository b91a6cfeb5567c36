import numpy as np
import pytest
import torch
from conftest import write_image
from PIL import Image

from hifilight.data.images import list_images, load_gray, load_rgb
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


def _gray16(path, ext):
    ramp = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, 0)  # 0, 1, 128, 255 in 8 bit
    Image.fromarray(ramp).save(path.with_suffix(ext))
    return path.with_suffix(ext)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, ext):
    path = _gray16(tmp_path / "g", ext)
    assert Image.open(path).mode.startswith("I;16")
    img = load_rgb(path)
    assert img.mode == "RGB" and np.asarray(img)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert load_gray(path)[0].tolist() == [0, 1, 128, 255]


def test_16_bit_rgb_keeps_its_colours(tmp_path):
    import cv2

    rgb = np.zeros((4, 4, 3), dtype=np.uint16)
    rgb[..., 0] = 65535  # red at full scale (OpenCV writes BGR: channel 2 is red)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1].copy())
    assert np.asarray(load_rgb(tmp_path / "c.png"))[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    ("size", "match"),
    [
        ((12000, 9000), "12000 x 9000 is more than 100 megapixels"),
        ((20000, 20000), "too many pixels \\(over 100 megapixels\\)"),
    ],
)
def test_huge_images_are_refused_before_decoding(tmp_path, size, match):
    import struct
    import zlib

    path = tmp_path / "bomb.png"
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())  # IHDR sits at bytes 8..33: length, type, width, height, ..., CRC
    data[16:24] = struct.pack(">II", *size)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))  # a header that claims the size; decoding it would fail
    with pytest.raises(HifiError, match=f"bomb.png: {match}; downscale it"):
        load_rgb(path)
