"""T_theta (Eq. 8-9, Appendix B): recovery of known transforms between synthetic masks."""

import math

import pytest
import torch

from hifilight.perception.align import Alignment, AlignSettings, align_masks, apply, iou, mask_points


def _l_shape(n=128):
    m = torch.zeros(1, 1, n, n)
    m[..., 40:90, 30:60] = 1
    m[..., 40:55, 60:100] = 1
    return m


def _moved(mask, scale, degrees, tx, ty):
    return (apply(mask, Alignment(scale, math.radians(degrees), tx, ty, 0.0, 0.0)) > 0.5).float()


def test_recovers_a_known_scale_rotation_translation():
    m_r = _l_shape()
    m_g = _moved(m_r, 0.8, 20, 0.2, -0.15)
    fit = align_masks(m_r[0, 0], m_g[0, 0])
    assert iou(apply(m_r, fit), m_g) >= 0.95
    assert fit.scale == pytest.approx(0.8, abs=0.03)
    assert math.degrees(fit.angle) == pytest.approx(20, abs=3)
    assert (fit.tx, fit.ty) == pytest.approx((0.2, -0.15), abs=0.03)


def test_aligns_masks_that_do_not_overlap_at_start():
    m_r = torch.zeros(1, 1, 128, 128)
    m_r[..., 5:25, 5:45] = 1
    m_r[..., 25:35, 5:15] = 1
    m_g = _moved(m_r, 1.5, -10, 1.1, 1.1)
    assert iou(m_r, m_g) == 0.0
    fit = align_masks(m_r[0, 0], m_g[0, 0])
    assert iou(apply(m_r, fit), m_g) >= 0.95


def test_masks_of_different_sizes_align_in_normalised_coordinates():
    m_r = _l_shape(128)
    m_g = torch.nn.functional.interpolate(_moved(m_r, 1.2, 0, -0.1, 0.1), size=(64, 64), mode="nearest")
    fit = align_masks(m_r[0, 0], m_g[0, 0])
    warped = torch.nn.functional.interpolate(apply(m_r, fit), size=(64, 64), mode="area")
    assert iou(warped, m_g) >= 0.93


def test_point_term_pulls_disjoint_masks_together_where_l1_alone_cannot():
    """From the identity start (Appendix B), disjoint masks give L1 no gradient; the nearest-point term does."""
    m_r = torch.zeros(1, 1, 128, 128)
    m_r[..., 10:40, 10:50] = 1
    m_g = _moved(m_r, 1.0, 0, 1.0, 1.0)
    assert iou(m_r, m_g) == 0.0
    l1_only = align_masks(m_r[0, 0], m_g[0, 0], AlignSettings(init="identity", point_weight=0.0))
    with_points = align_masks(m_r[0, 0], m_g[0, 0], AlignSettings(init="identity", steps=400))
    assert iou(apply(m_r, l1_only), m_g) < 0.1
    assert iou(apply(m_r, with_points), m_g) >= 0.9


def test_mask_points_are_pixel_centres_and_subsampled():
    m = torch.zeros(4, 4)
    m[0, 0] = m[3, 3] = 1
    assert mask_points(m, 10).tolist() == [[-0.75, -0.75], [0.75, 0.75]]
    assert len(mask_points(torch.ones(32, 32), 100)) == 100


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="subject pixels"):
        align_masks(torch.zeros(16, 16), torch.ones(16, 16))
