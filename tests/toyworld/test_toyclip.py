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


def test_a_hard_negative_differs_in_one_shape_or_pattern_word():
    from hifilight.toyworld.scenes import SHAPES

    rng = np.random.default_rng(0)
    captions = ["a blue star with yellow dots on the beach", "a photo of a ring", "a striped square", "a red heart"]
    seen = set()
    for _ in range(20):
        for caption, negative in zip(captions, toyclip.swap_negatives(captions, rng), strict=True):
            changed = [(a, b) for a, b in zip(caption.split(), negative.split(), strict=True) if a != b]
            assert len(changed) == 1, (caption, negative)
            ((old, new),) = changed
            assert any(old in g and new in g for g in toyclip.SWAPS), (old, new)
            seen.add("shape" if old in SHAPES else "pattern")
    assert seen == {"shape", "pattern"}  # both kinds are drawn


def test_hard_negatives_add_columns_to_the_image_side_only_and_one_equal_to_a_caption_is_a_positive(clip):
    model, tokenizer = clip
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    captions, negatives = ["a red star", "a blue ring", "a green heart"], ["a red ring", "a blue ring", "a green star"]
    ids = tokenize(tokenizer, captions)
    with torch.no_grad():
        img = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        txt = F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
        hard = F.normalize(model.get_text_features(input_ids=tokenize(tokenizer, negatives)).pooler_output, dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * img @ txt.T
        wide = torch.cat([logits, scale * img @ hard.T], 1)
        # image 1's own caption "a blue ring" is also negative 1: both its columns are its positives
        target = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0.5, 0], [0, 0, 1.0, 0, 0, 0]])
        want = (
            -(target * wide.log_softmax(1)).sum(1).mean() - (torch.eye(3) * logits.log_softmax(0)).sum(0).mean()
        ) / 2
        got = toyclip.contrastive_loss(model, pixels, ids, captions, negatives, lambda c: tokenize(tokenizer, c))
    assert torch.allclose(got, want, atol=1e-5), (got, want)


def test_attribute_accuracy_reads_each_attribute_against_captions_that_differ_only_there():
    from hifilight.toyworld.corpus import render_corpus

    tokenizer = toy_tokenizer()
    images, scenes, _ = render_corpus(6, seed=7)

    class Oracle:  # a "CLIP" whose image i embeds exactly its own caption: every attribute read right
        def get_image_features(self, pixel_values):
            return self.get_text_features(tokenize(tokenizer, [s.caption for s in scenes]))

        def get_text_features(self, input_ids):
            out = torch.nn.functional.one_hot(input_ids, len(tokenizer)).float().sum(1)
            return type("Out", (), {"pooler_output": out})()

    result = toyclip.attribute_accuracy(Oracle(), lambda c: tokenize(tokenizer, c), images, scenes)
    assert result == {"shape": 1.0, "color": 1.0, "pattern": 1.0, "background": 1.0}


def test_the_toyclip_trainer_refuses_a_missing_run_and_records_what_it_reads_before_and_after(tmp_path):
    import json

    from hifilight.errors import HifiError
    from hifilight.toyworld.toyclip_training import ToyCLIPArgs, train

    with pytest.raises(HifiError, match="no toyclip/ to continue"):
        ToyCLIPArgs(to=tmp_path / "new", world_dir=tmp_path).check()
    args = ToyCLIPArgs(
        to=tmp_path / "new", world_dir=tmp_path, init=False, train_steps=2, batch=8, images=32, eval_images=8
    )
    record = train(args, log=lambda _: None)
    saved = json.loads((tmp_path / "new" / "training.json").read_text())
    assert saved == record and set(record["attribute_accuracy_after"]) == {"shape", "color", "pattern", "background"}
    assert toyclip.load(tmp_path / "new")[0].config.projection_dim == 64
    with pytest.raises(HifiError, match="already exists"):
        ToyCLIPArgs(to=tmp_path / "new", world_dir=tmp_path, init=False).check()


def test_word_separation_is_the_centred_spread_of_the_words_state(clip):
    from hifilight.toyworld.scenes import SHAPES

    model, tokenizer = clip
    got = toyclip.word_separation(model, lambda c: tokenize(tokenizer, c))
    with torch.no_grad():
        ids = tokenize(tokenizer, [f"a {s} on the beach" for s in SHAPES])
        assert [tokenizer.convert_ids_to_tokens(int(i)) for i in ids[:2, 2]] == ["circle</w>", "square</w>"]
        states = model.text_model(input_ids=ids).last_hidden_state[:, 2]
    want = (states - states.mean(0)).norm(dim=-1).mean() / states.norm(dim=-1).mean()
    assert got["shape"] == pytest.approx(float(want), abs=1e-3) and set(got) == {"shape", "color", "pattern"}


def test_the_shape_term_is_the_cross_entropy_of_shape_and_pattern_and_leaves_no_head_in_the_model(clip):
    from hifilight.toyworld.corpus import caption_variant, render_corpus
    from hifilight.toyworld.scenes import PATTERNS, SHAPES, ToyObject

    objects = [ToyObject("star", "red", "dotted", "blue"), ToyObject("ring", "blue", "plain", "blue")]
    logits = torch.randn(2, len(SHAPES) + len(PATTERNS), generator=torch.Generator().manual_seed(0))
    want = F.cross_entropy(logits[:, :6], torch.tensor([2, 3])) + F.cross_entropy(logits[:, 6:], torch.tensor([2, 0]))
    assert torch.allclose(toyclip.shape_loss(logits, objects), want)
    tokenizer = clip[1]
    model = toyclip.build(tokenizer, seed=4)
    keys = set(model.state_dict())
    images, scenes, _ = render_corpus(16, seed=6)
    toyclip.train(model, lambda c: tokenize(tokenizer, c), images, scenes, lambda s, r: caption_variant(s, r, drop=0.0),
                  3, 8, 1e-3, log=lambda _: None, hard_negatives=True, shape_weight=1.0)  # fmt: skip
    assert set(model.state_dict()) == keys  # the head is training-only: the saved ToyCLIP is a plain CLIPModel
