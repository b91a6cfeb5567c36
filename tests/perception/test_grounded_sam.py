"""Grounded SAM on tiny random-weight Grounding DINO and SAM models built here (no downloads)."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SamConfig,
    SamImageProcessor,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
    SwinConfig,
)

from hifilight.cli import main
from hifilight.data.masks import build_mask_provider
from hifilight.errors import HifiError
from hifilight.perception.grabcut import GrabCutMaskProvider
from hifilight.perception.grounded_sam import (
    GroundedSam,
    GroundedSamMaskProvider,
    GroundedSamSettings,
    TransformersSam,
    checkpoint_model_type,
    load_segmenter,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "teapot", "toy"]


def tiny_detector():
    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=10,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(VOCAB)})
    processor = GroundingDinoProcessor(
        GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}), tokenizer
    )
    return GroundingDinoForObjectDetection(config), processor


def tiny_segmenter():
    torch.manual_seed(1)
    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        mlp_dim=64,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
    )
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    return model, SamProcessor(
        SamImageProcessor(
            size={"longest_edge": 64},
            pad_size={"height": 64, "width": 64},
            mask_size={"longest_edge": 16},
            mask_pad_size={"height": 16, "width": 16},
        )
    )


def grounded(**settings):
    settings = GroundedSamSettings(box_threshold=0.0, text_threshold=0.0, **settings)
    return GroundedSam(*tiny_detector(), TransformersSam(*tiny_segmenter()), settings)


def photo(seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (72, 56, 3), dtype=np.uint8))


class RecordingSam(GroundedSam):
    def segment(self, image, box):
        self.received = box
        return super().segment(image, box)


def test_detector_boxes_are_scored_and_sorted():
    boxes, scores = grounded().detect(photo(), "dog")
    assert len(boxes) >= 1 and scores == sorted(scores, reverse=True)
    assert all(0 <= x0 <= x1 <= 56 and 0 <= y0 <= y1 <= 72 for x0, y0, x1, y1 in boxes)


def test_the_detectors_best_box_is_what_sam_receives():
    model = RecordingSam(
        *tiny_detector(), TransformersSam(*tiny_segmenter()), GroundedSamSettings(box_threshold=0.0, text_threshold=0.0)
    )
    boxes, _ = model.detect(photo(), "dog")
    mask = GroundedSamMaskProvider(model, "dog")("p.png", photo())
    assert model.received == boxes[0]
    assert mask.shape == (1, 72, 56) and mask.dtype == torch.float32 and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_union_box_encloses_all_boxes():
    model = grounded(box_choice="union")
    boxes, _ = model.detect(photo(), "dog")
    union = np.array(model.choose(boxes))
    arr = np.array(boxes)
    assert np.allclose(union, [arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])


@pytest.mark.parametrize("fallback", ["grabcut", "full"])
def test_nothing_found_falls_back_with_a_warning(fallback):
    model = GroundedSam(
        *tiny_detector(), TransformersSam(*tiny_segmenter()), GroundedSamSettings(box_threshold=1.01, fallback=fallback)
    )
    image = photo()
    with pytest.warns(UserWarning, match=f"p07.png: no 'dog' box .*using {fallback}"):
        mask = GroundedSamMaskProvider(model, "dog")("photos/p07.png", image)
    expected = GrabCutMaskProvider()("p07.png", image) if fallback == "grabcut" else torch.ones(1, 72, 56)
    assert torch.equal(mask, expected)


def test_local_folders_load_and_the_masks_command_uses_them(tmp_path):
    detector, det_proc = tiny_detector()
    segmenter, seg_proc = tiny_segmenter()
    for obj, folder in [(detector, "gd"), (det_proc, "gd"), (segmenter, "sam"), (seg_proc, "sam")]:
        obj.save_pretrained(tmp_path / folder)
    settings = GroundedSamSettings(
        detector=str(tmp_path / "gd"), segmenter=str(tmp_path / "sam"), box_threshold=0.0, text_threshold=0.0
    )
    provider = build_mask_provider("grounded_sam", tmp_path, None, "dog", settings)
    direct = GroundedSamMaskProvider(
        GroundedSam(detector, det_proc, TransformersSam(segmenter, seg_proc), settings), "dog"
    )
    assert torch.equal(provider("a.png", photo()), direct("a.png", photo()))
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(1).save(photos / "00.png")
    args = [
        "masks",
        "--data.subject_dir",
        str(photos),
        "--data.class_name",
        "dog",
        "--masks",
        "grounded_sam",
        "--segmentation.detector",
        str(tmp_path / "gd"),
        "--segmentation.segmenter",
        str(tmp_path / "sam"),
        "--segmentation.box_threshold",
        "0",
        "--segmentation.text_threshold",
        "0",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(args) == 0
    assert (tmp_path / "m" / "00.png").is_file() and (tmp_path / "m" / "overlay.png").is_file()


def test_original_checkpoints_need_the_optional_package(tmp_path):
    assert checkpoint_model_type(tmp_path / "sam_vit_h_4b8939.pth") == "vit_h"
    with pytest.raises(HifiError, match="cannot tell the SAM size"):
        checkpoint_model_type(tmp_path / "model.pth")
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        with pytest.raises(
            HifiError, match="segment-anything package is not installed; pip install 'hifilight\\[sam\\]'"
        ):
            load_segmenter(str(tmp_path / "sam_vit_h_4b8939.pth"))
    else:
        with pytest.raises(HifiError, match="no such checkpoint file"):
            load_segmenter(str(tmp_path / "sam_vit_h_4b8939.pth"))
