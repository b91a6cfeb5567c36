"""Captioners: BLIP-2 on a tiny random-weight model built here, and the user's own caption."""

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipImageProcessor,
    OPTConfig,
    PreTrainedTokenizerFast,
)

from hifilight.errors import HifiError
from hifilight.perception.captioner import Blip2Captioner, FixedCaption, captions_or_fallback

WORDS = ["<pad>", "</s>", "<unk>", "<image>", "a", "photo", "of", "dog", "cat", "on", "the", "beach"]


def tiny_blip2():
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        eos_token="</s>",
        bos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=["<image>"],
    )
    vision = Blip2VisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    qformer = Blip2QFormerConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        encoder_hidden_size=32,
        vocab_size=len(WORDS),
    )
    text = OPTConfig(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=1,
        ffn_dim=37,
        num_attention_heads=2,
        max_position_embeddings=64,
        word_embed_proj_dim=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=4,
        image_token_index=3,
    )
    torch.manual_seed(0)
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer, num_query_tokens=4
    )
    return Blip2ForConditionalGeneration(config), processor


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(3)]


def test_blip2_captions_are_strings_one_per_image_and_batch_independent():
    captioner = Blip2Captioner(*tiny_blip2(), max_new_tokens=4, batch_size=2)
    captions = captioner.caption(_images())
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert captions == [captioner.caption([img])[0] for img in _images()]  # greedy decoding: deterministic


def test_saved_folder_loads(tmp_path):
    model, processor = tiny_blip2()
    model.save_pretrained(tmp_path / "blip2")
    processor.save_pretrained(tmp_path / "blip2")
    loaded = Blip2Captioner.from_pretrained(str(tmp_path / "blip2"), max_new_tokens=4)
    assert loaded.caption(_images()[:1]) == Blip2Captioner(model, processor, max_new_tokens=4).caption(_images()[:1])
    with pytest.raises(HifiError, match="--caption"):
        Blip2Captioner.from_pretrained(str(tmp_path / "missing"))


def test_users_caption_and_fallback():
    assert FixedCaption(" a photo of a sitting cat ").caption(_images()) == ["a photo of a sitting cat"] * 3
    with pytest.raises(HifiError, match="--caption is empty"):
        FixedCaption("  ")

    class Mute:
        def caption(self, images):
            return ["", "a dog"]

    with pytest.warns(UserWarning, match="image 0: .*empty caption"):
        assert captions_or_fallback(Mute(), _images()[:2], "a photo of a dog") == ["a photo of a dog", "a dog"]
