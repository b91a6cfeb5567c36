"""DINO and CLIP encoders on tiny random-weight models: shapes, normalisation, batching, preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, ViTConfig, ViTModel

from hifilight.errors import HifiError
from hifilight.perception.encoders import ClipEncoder, DinoEncoder, Preprocess, clip_preprocess, dino_preprocess

pytestmark = pytest.mark.numerical


def _images(n=3):
    rng = np.random.default_rng(0)
    sizes = [(50, 70), (64, 64), (90, 40)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


@pytest.fixture(scope="module")
def dino():
    return DinoEncoder.from_pretrained("tiny", batch_size=2)


@pytest.fixture(scope="module")
def clip():
    return ClipEncoder.from_pretrained("tiny", batch_size=2)


def test_dino_embeddings(dino):
    emb = dino.encode_images(_images())
    assert emb.shape == (3, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    singles = torch.cat([dino.encode_images([img]) for img in _images()])
    assert torch.allclose(emb, singles, atol=1e-5)  # batching does not change results


def test_clip_image_and_text_embeddings(clip):
    img = clip.encode_images(_images())
    txt = clip.encode_texts(["a photo of a dog", "a red car", "x"])
    assert img.shape == (3, 16) and txt.shape == (3, 16)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt[:1], clip.encode_texts(["a photo of a dog"]), atol=1e-5)


def test_clip_preprocessing_matches_the_processor():
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    expected = processor(images=_images(), return_tensors="pt")["pixel_values"]
    assert torch.allclose(clip_preprocess(32)(_images()), expected, atol=1e-4)


def test_dino_preprocessing_is_resize_256_crop_224():
    pre = dino_preprocess()
    assert (pre.resize, pre.crop) == (256, 224)
    x = pre([Image.new("RGB", (300, 500), (124, 116, 104))])  # the ImageNet mean colour -> ~0
    assert x.shape == (1, 3, 224, 224) and x.abs().max() < 0.02


def test_loading_from_a_saved_folder(dino, tmp_path):
    dino.model.save_pretrained(tmp_path / "dino")
    loaded = DinoEncoder.from_pretrained(str(tmp_path / "dino"))
    assert torch.allclose(loaded.encode_images(_images(1)), dino.encode_images(_images(1)), atol=1e-6)
    with pytest.raises(HifiError, match="--metrics.dino_model"):
        DinoEncoder.from_pretrained(str(tmp_path / "missing"))


def test_preprocess_rejects_nothing_silently():
    with pytest.raises(ValueError, match="no inputs"):
        DinoEncoder(
            ViTModel(
                ViTConfig(
                    image_size=16,
                    patch_size=8,
                    hidden_size=8,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    intermediate_size=8,
                )
            )
        ).encode_images([])
    assert isinstance(Preprocess(8, 8, (0, 0, 0), (1, 1, 1)).one(Image.new("L", (8, 8))), torch.Tensor)
