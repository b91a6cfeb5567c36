"""ToyCLIP: its loss is CLIP's where captions are distinct, its text tower is ToySD v2's text encoder exactly, and
the folder it writes is read by the CLIP-I / CLIP-T evaluator with the preprocessing it was trained with."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hifilight.perception.encoders import ClipEncoder
from hifilight.toyworld import toyclip
from hifilight.toyworld.tokenizer import tokenize, toy_tokenizer


@pytest.fixture(scope="module")
def clip():
    tokenizer = toy_tokenizer()
    return toyclip.build(tokenizer, seed=0), tokenizer


def _captions():
    return ["a red star on the beach", "a blue ring in the snow", "a green heart on the grass", "a photo of a star"]


def test_with_distinct_captions_the_loss_is_clips_own(clip):
    model, tokenizer = clip
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ids = tokenize(tokenizer, _captions())
    with torch.no_grad():
        ours = toyclip.contrastive_loss(model, pixels, ids, _captions())
        theirs = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_a_repeated_caption_is_a_positive_of_every_image_it_describes(clip):
    model, tokenizer = clip
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    captions = ["a photo of a star", "a photo of a star", "a red ring", "a blue heart"]
    ids = tokenize(tokenizer, captions)
    with torch.no_grad():
        img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        txt = F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        target = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        want = (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean()) / 2
        assert torch.allclose(toyclip.contrastive_loss(model, pixels, ids, captions), want, atol=1e-5)


def test_the_text_tower_is_the_text_encoder_toysd_v2_uses(clip):
    model, tokenizer = clip
    ids = tokenize(tokenizer, _captions())
    tower = toyclip.text_encoder(model)
    assert not any(p.requires_grad for p in tower.parameters())
    with torch.no_grad():
        assert torch.equal(tower(ids).last_hidden_state, model.text_model(input_ids=ids).last_hidden_state)


def test_training_lowers_the_loss_on_renders(clip):
    from hifilight.toyworld.corpus import caption_variant, render_corpus

    tokenizer = clip[1]
    model = toyclip.build(tokenizer, seed=3)
    images, scenes, _ = render_corpus(24, seed=5)
    fixed = [s.caption for s in scenes[:16]]
    ids = tokenize(tokenizer, fixed)
    with torch.no_grad():
        before = float(toyclip.contrastive_loss(model, images[:16], ids, fixed))

    def caption(scene, rng):
        return caption_variant(scene, rng, drop=0.0)

    toyclip.train(model, lambda c: tokenize(tokenizer, c), images, scenes, caption, 15, 16, 1e-3, log=lambda _: None)
    with torch.no_grad():
        after = float(toyclip.contrastive_loss(model, images[:16], ids, fixed))
    assert after < 0.8 * before, (before, after)


def test_the_saved_folder_loads_as_a_clip_evaluator_with_its_own_preprocessing(clip, tmp_path):
    from PIL import Image

    model, tokenizer = clip
    toyclip.save(model, tokenizer, tmp_path / "toyclip")
    encoder = ClipEncoder.from_pretrained(str(tmp_path / "toyclip"))
    assert encoder.preprocess.resize == 64 and encoder.preprocess.mean == (0.5, 0.5, 0.5)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text = F.normalize(model.get_text_features(input_ids=tokenize(tokenizer, ["a red star"])).pooler_output, dim=-1)
    assert torch.allclose(encoder.encode_images([image]), want, atol=1e-5)
    assert torch.allclose(encoder.encode_texts(["a red star"]), text, atol=1e-5)
