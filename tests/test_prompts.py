import pytest

from hifilight.errors import HifiError
from hifilight.prompts import has_placeholder, render


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a photo of a {}", "a photo of a dog"),
        ("a <subject> on the beach", "a dog on the beach"),
        ("a sitting {} dog", "a sitting dog"),
        ("a dog in the snow", "a dog in the snow"),
        ("{} and another {}", "dog and another dog"),
    ],
)
def test_render(template, expected):
    assert render(template, "dog") == expected


def test_render_without_placeholder_or_class_word_is_an_error():
    with pytest.raises(HifiError, match="no subject placeholder"):
        render("a beach at sunset", "dog")


def test_class_word_must_be_a_whole_word():
    assert not has_placeholder("a hotdog")
    with pytest.raises(HifiError):
        render("a hotdog", "dog")
