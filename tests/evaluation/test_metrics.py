"""Metric math on hand-made embeddings: known cosines, pairing, x100, batch order, merged (distributed) states."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from hifilight.evaluation.metrics import CLIPImageScore, CLIPTextScore, DINOScore, real_vs_real
from hifilight.perception.encoders import ClipEncoder, DinoEncoder


def _unit(deg):
    return torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


GEN = torch.stack([_unit(0), _unit(90)])
REAL = torch.stack([_unit(0), _unit(60), _unit(180)])


def test_all_pairs_mean_of_known_cosines():
    m = DINOScore()
    m.update(GEN, REAL)
    cosines = [1.0, 0.5, -1.0, 0.0, math.cos(math.radians(30)), 0.0]
    assert m.compute().item() == pytest.approx(sum(cosines) / 6, abs=1e-6)


def test_one_to_one_pairing_and_scale100():
    m = CLIPImageScore(pairing="one_to_one", scale100=True)
    m.update(GEN, REAL[:2] * 7.0)  # norms do not matter
    assert m.compute().item() == pytest.approx(100 * (1.0 + math.cos(math.radians(30))) / 2, abs=1e-4)
    with pytest.raises(ValueError, match="as many generated as real"):
        m.update(GEN, REAL)
    with pytest.raises(ValueError, match="pairing"):
        DINOScore(pairing="best")


def test_batch_order_and_split_do_not_matter():
    g = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    r = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    whole, parts = DINOScore(), DINOScore()
    whole.update(g, r)
    for chunk in (g[[3, 1, 7]], g[[0, 2, 4, 5, 6]], g[8:]):
        parts.update(chunk, r)
    assert parts.compute().item() == pytest.approx(whole.compute().item(), abs=1e-6)


def test_merged_states_equal_one_metric_over_all_data():
    """What dist_reduce_fx='sum' does across processes: two workers' states merged = a single worker."""
    g = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    texts = torch.randn(10, 8, generator=torch.Generator().manual_seed(2))
    r = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    for cls, args in ((DINOScore, (r,)), (CLIPTextScore, None)):
        single, a, b = cls(), cls(), cls()
        if args is None:
            single.update(g, texts), a.update(g[:3], texts[:3]), b.update(g[3:], texts[3:])
        else:
            single.update(g, *args), a.update(g[:3], *args), b.update(g[3:], *args)
        a.merge_state(b)
        assert a.compute().item() == pytest.approx(single.compute().item(), abs=1e-6)
        assert a.total.dtype == torch.float64 and a.count.item() == single.count.item()


def test_clip_t_one_text_per_image_or_broadcast():
    m = CLIPTextScore()
    m.update(GEN, _unit(45)[None])  # one prompt for both images
    assert m.compute().item() == pytest.approx(math.cos(math.radians(45)), abs=1e-6)


def test_real_vs_real_excludes_self_pairs():
    total, count = real_vs_real(REAL)
    assert count == 6
    assert (total / count).item() == pytest.approx((0.5 - 1.0 + math.cos(math.radians(120))) * 2 / 6, abs=1e-6)


def test_images_of_different_sizes_go_through_the_encoders():
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in [(64, 64), (100, 30)]]
    dino = DINOScore(DinoEncoder.from_pretrained("tiny"))
    dino.update(imgs, imgs[::-1])
    clip = ClipEncoder.from_pretrained("tiny")
    clip_t = CLIPTextScore(clip)
    clip_t.update(imgs, ["a dog", "a cat"])
    assert -1 <= dino.compute().item() <= 1 and -1 <= clip_t.compute().item() <= 1
    assert dino.protocol() == {"metric": "dino", "encoder": "tiny", "pairing": "all", "scale100": False}
