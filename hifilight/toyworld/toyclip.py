"""ToyCLIP: a CLIP dual encoder (transformers' `CLIPModel`: a text transformer and a ViT) trained contrastively here
on ToyWorld renders and their captions, as CLIP was on web pairs.

It plays two of real CLIP's parts in ToyWorld:
- its **text tower is ToySD v2's frozen text encoder**, as CLIP ViT-L/14's is Stable Diffusion's: attribute words
  arrive already tied to what they look like, and the UNet learns to draw from them instead of learning the words
  jointly with the drawing;
- its image and text towers give ToyWorld the paper's **CLIP-I and CLIP-T** (cosine of image embeddings, and of image
  and prompt embeddings) through the evaluators real CLIP uses (`hifilight.evaluation`), since it is saved in the
  Hugging Face layout (`CLIPModel`, `CLIPTokenizer`, `CLIPImageProcessor`) and loads through the same path.

The captions are those ToySD trains on (`corpus.caption_variant`: full, partial and class-word captions), so every
prompt a ToyWorld table uses is in its distribution. Several images in a batch may share a caption ("a photo of a
star"); they are all positives of it (a multi-positive InfoNCE target, not CLIP's identity matrix).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextModel, CLIPTokenizer

from hifilight.io import write_folder_atomic
from hifilight.toyworld.scenes import PATTERNS, SHAPES

TEXT_HIDDEN = 128  # ToySD v2's cross-attention width (SD 1.x: 768)
IMAGE_SIZE = 64


def build(tokenizer: CLIPTokenizer, seed: int = 0, max_length: int = 32) -> CLIPModel:
    """A seeded, untrained ToyCLIP over `tokenizer`'s vocabulary: text 4 layers x 128, ViT 4 layers x 128 on 8 px
    patches of 64 px images, joint space 64."""
    vocab = len(tokenizer)
    text = dict(vocab_size=vocab, hidden_size=TEXT_HIDDEN, intermediate_size=4 * TEXT_HIDDEN, num_hidden_layers=4,
                num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=vocab - 2,
                eos_token_id=vocab - 1, pad_token_id=vocab - 1)  # fmt: skip
    vision = dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, num_channels=3)  # fmt: skip
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)).eval()


def image_processor() -> CLIPImageProcessor:
    """What turns a PIL image into ToyCLIP's input: 64 px, scaled to [-1, 1] (mean and std 0.5), as ToySD's VAE sees
    images."""
    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )


def contrastive_loss(
    model: CLIPModel, pixels: torch.Tensor, ids: torch.Tensor, captions: list[str], negatives: list[str] | None = None,
    tokenize=None,
) -> torch.Tensor:  # fmt: skip
    """Symmetric InfoNCE over a batch in which identical captions are one another's positives. With `negatives`
    (hard negatives: captions that differ from the batch's in one word, see `swap_negatives`), the image -> text
    side also ranks them; one that equals an image's own caption counts as its positive."""
    features = model.get_image_features(pixel_values=pixels).pooler_output
    return features_loss(model, features, ids, captions, negatives, tokenize)


def features_loss(model, features, ids, captions, negatives=None, tokenize=None) -> torch.Tensor:
    """`contrastive_loss` from the image tower's (unnormalised) embeddings of the batch."""
    img = F.normalize(features, dim=-1)
    txt = F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
    index = {c: i for i, c in enumerate(dict.fromkeys(captions + (negatives or [])))}
    keys = torch.tensor([index[c] for c in captions], device=img.device)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * img @ txt.T
    same = (keys[:, None] == keys[None, :]).float()
    to_text, columns = logits, same
    if negatives:
        hard = F.normalize(model.get_text_features(input_ids=tokenize(negatives).to(ids.device)).pooler_output, dim=-1)
        neg_keys = torch.tensor([index[c] for c in negatives], device=img.device)
        to_text = torch.cat([logits, scale * img @ hard.T], 1)
        columns = torch.cat([same, (keys[:, None] == neg_keys[None, :]).float()], 1)
    loss_i = -(columns / columns.sum(1, keepdim=True) * to_text.log_softmax(1)).sum(1).mean()
    loss_t = -(same / same.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (loss_i + loss_t) / 2


# the words a hard negative swaps (one per negative): ToyCLIP first learnt colours and backgrounds, which tell almost
# every pair in a random batch apart, and read shapes at 26% (chance 17%) and patterns at 65% (see
# `attribute_accuracy`), so its frozen text tower gave ToySD v2's UNet nearly the same states for "square" and
# "circle" (cosine 0.995); captions that differ only in one of these words make the contrastive loss separate them
SWAPS = (SHAPES, ("stripes", "dots", "checks"), ("striped", "dotted", "checkered"))


def swap_negatives(captions: list[str], rng: np.random.Generator) -> list[str]:
    """Per caption, the same caption with one swappable word (a shape, or a pattern word when it has one, half of
    the time) replaced by another of its kind: "a blue star with yellow dots" -> "a blue ring with yellow dots"."""
    out = []
    for caption in captions:
        words = caption.split()
        spots = [(k, group) for k, w in enumerate(words) for group in SWAPS if w in group]
        shapes = [spot for spot in spots if spot[1] is SHAPES]
        patterns = [spot for spot in spots if spot[1] is not SHAPES]
        if spots:  # every ToyWorld caption names a shape; one that names none stays as it is (its own positive)
            k, group = shapes[0] if shapes and (not patterns or rng.random() < 0.5) else patterns[0]
            words[k] = str(rng.choice([w for w in group if w != words[k]]))
        out.append(" ".join(words))
    return out


def train(
    model: CLIPModel,
    tokenize,
    images: torch.Tensor,
    scenes: list,
    caption,
    steps: int,
    batch: int = 128,
    lr: float = 5e-4,
    seed: int = 0,
    log=print,
    device: str = "cpu",
    hard_negatives: bool = False,
    shape_weight: float = 0.0,
) -> CLIPModel:
    """Contrastive training on `images` ([-1, 1], (N, 3, 64, 64)) with `caption(scene, rng)` drawn afresh at every
    step (warm-up then cosine learning rate), on `device`, with `hard_negatives` a swapped caption per image too
    (`swap_negatives`), and with `shape_weight` > 0 a cross-entropy of the image embedding's shape and pattern
    (a linear head used in training only, see `SHAPE_HEAD`); the model comes back on the CPU."""
    rng = np.random.default_rng([seed, 11])
    model.to(device)
    head = torch.nn.Linear(model.config.projection_dim, len(SHAPES) + len(PATTERNS)).to(device)
    params = list(model.parameters()) + (list(head.parameters()) if shape_weight > 0 else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    for step in range(steps):
        idx = rng.integers(len(images), size=batch)
        captions = [caption(scenes[i], rng) for i in idx]
        negatives = swap_negatives(captions, rng) if hard_negatives else None
        ids = tokenize(captions).to(device)
        features = model.get_image_features(pixel_values=images[idx].to(device)).pooler_output
        loss = features_loss(model, features, ids, captions, negatives, tokenize)
        if shape_weight > 0:
            loss = loss + shape_weight * shape_loss(head(features), [scenes[i].obj for i in idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"toyclip step {step}: loss {loss.item():.4f}")
    return model.cpu().eval()


# SHAPE_HEAD: ToyCLIP's image tower, trained contrastively alone, read shapes at 26-37% even with hard negatives (its
# text tower then had nothing to separate "square" from "circle" by); the scenes' labels are known in ToyWorld, so
# a supervised shape and pattern term on the image embedding (a choice of ours, off by default) teaches the tower
# what the contrastive loss then ties to the words.
def shape_loss(logits: torch.Tensor, objects: list) -> torch.Tensor:
    """Cross-entropy of the shape (first len(SHAPES) logits) and the pattern (the rest) of each object."""
    shapes = torch.tensor([SHAPES.index(o.shape) for o in objects], device=logits.device)
    patterns = torch.tensor([PATTERNS.index(o.pattern) for o in objects], device=logits.device)
    n = len(SHAPES)
    return F.cross_entropy(logits[:, :n], shapes) + F.cross_entropy(logits[:, n:], patterns)


@torch.no_grad()
def retrieval_accuracy(model: CLIPModel, tokenize, images: torch.Tensor, captions: list[str]) -> float:
    """Share of images whose own caption is the most similar among the distinct `captions` (image -> text)."""
    distinct = list(dict.fromkeys(captions))
    img = F.normalize(model.get_image_features(pixel_values=images).pooler_output, dim=-1)
    txt = F.normalize(model.get_text_features(input_ids=tokenize(distinct)).pooler_output, dim=-1)
    best = (img @ txt.T).argmax(1)
    truth = torch.tensor([distinct.index(c) for c in captions])
    return float((best == truth).float().mean())


def text_encoder(model: CLIPModel) -> CLIPTextModel:
    """ToyCLIP's text tower as a `CLIPTextModel` (what a diffusers pipeline's `text_encoder` is), frozen."""
    tower = CLIPTextModel(model.config.text_config)
    tower.load_state_dict(model.text_model.state_dict())
    return tower.eval().requires_grad_(False)


def save(
    model: CLIPModel, tokenizer: CLIPTokenizer, out: Path, overwrite: bool = True, record: dict | None = None
) -> Path:
    """The Hugging Face layout (`CLIPModel.from_pretrained(out)`, `CLIPTokenizer`, `CLIPImageProcessor`), with
    `record` as training.json, atomically."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        image_processor().save_pretrained(tmp)
        if record is not None:
            (tmp / "training.json").write_text(json.dumps(record, indent=1) + "\n")

    write_folder_atomic(Path(out), write, overwrite=overwrite)
    return Path(out)


def load(folder: Path) -> tuple[CLIPModel, CLIPTokenizer]:
    return CLIPModel.from_pretrained(folder).eval(), CLIPTokenizer.from_pretrained(folder)


@torch.no_grad()
def attribute_accuracy(model: CLIPModel, tokenize, images: torch.Tensor, scenes: list) -> dict[str, float]:
    """Zero-shot reading of each attribute: per image, its caption and the captions that differ from it only in that
    attribute's value; the share of images whose own caption ranks first (shape: 6 captions, chance 0.17)."""
    from dataclasses import replace

    from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, PATTERNS

    img = F.normalize(model.get_image_features(pixel_values=images).pooler_output, dim=-1)
    values = {"shape": SHAPES, "color": list(COLORS), "pattern": PATTERNS, "background": list(BACKGROUNDS)}
    result = {}
    for name, choices in values.items():
        hits = 0
        for k, scene in enumerate(scenes):
            variants = [
                replace(scene, background=v)
                if name == "background"
                else replace(scene, obj=replace(scene.obj, **{name: v}))
                for v in choices
            ]
            truth = choices.index(scene.background if name == "background" else getattr(scene.obj, name))
            txt = F.normalize(
                model.get_text_features(input_ids=tokenize([v.caption for v in variants])).pooler_output, dim=-1
            )
            hits += int((img[k] @ txt.T).argmax() == truth)
        result[name] = round(hits / len(scenes), 3)
    return result


@torch.no_grad()
def word_separation(model: CLIPModel, tokenize) -> dict[str, float]:
    """How far apart the text tower's last hidden states (what ToySD v2's UNet attends to) put the values of each
    word kind, in one template where the word is the second token ("a {shape} on the beach", "a {colour} star on
    the beach", "a {pattern} star on the beach"): the mean norm of the states centred over the values, over their
    mean norm. 0: the UNet gets one state for every value; the committed ToyCLIP: colour 0.66, shape 0.15."""
    from hifilight.toyworld.scenes import COLORS

    templates = {
        "shape": ("a {} on the beach", SHAPES),
        "color": ("a {} star on the beach", list(COLORS)),
        "pattern": ("a {} star on the beach", ["striped", "dotted", "checkered"]),
    }
    result = {}
    for name, (template, values) in templates.items():
        states = model.text_model(input_ids=tokenize([template.format(v) for v in values])).last_hidden_state[:, 2]
        centred = states - states.mean(0)
        result[name] = round(float(centred.norm(dim=-1).mean() / states.norm(dim=-1).mean()), 3)
    return result
