"""Figures: labelled lines of images."""

import pytest
from PIL import Image

from hifilight.viz import _wrap, labelled_rows


def test_labelled_rows_resize_every_image_to_the_tile_and_pad_short_lines_with_white():
    lines = [("a long label that wraps over lines", [Image.new("RGB", (32, 32), "red")] * 3),
             ("b", [Image.new("RGB", (100, 50), "blue")])]  # fmt: skip
    image = labelled_rows(lines, tile=20, label_width=60)
    assert image.size == (60 + 3 * 20, 2 * 20)
    assert image.getpixel((60 + 2 * 20 + 10, 10)) == (255, 0, 0)
    assert image.getpixel((60 + 10, 30)) == (0, 0, 255) and image.getpixel((60 + 30, 30)) == (255, 255, 255)
    assert _wrap("a long label that wraps", 10) == ["a long", "label that", "wraps"]
    with pytest.raises(ValueError, match="at least one line"):
        labelled_rows([("empty", [])])
