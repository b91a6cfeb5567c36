import pytest
import torch

from hifilight.masking import MASK_RULES, latent_mask


def quarter_plus_sliver() -> torch.Tensor:
    """16 x 16 mask over a 2 x 2 latent grid: the top-left cell full, the top-right cell a quarter, the bottom-left
    cell one pixel; the bottom-right cell empty."""
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :8] = 1
    mask[..., :4, 8:12] = 1  # 16 of the cell's 64 pixels
    mask[..., 8, 0] = 1
    return mask


def test_area_rule_keeps_cells_at_least_half_subject():
    assert latent_mask(quarter_plus_sliver(), (2, 2), "area").flatten().tolist() == [1, 0, 0, 0]


def test_touched_rule_keeps_every_cell_the_subject_touches():
    assert latent_mask(quarter_plus_sliver(), (2, 2), "touched").flatten().tolist() == [1, 1, 1, 0]


def test_soft_rule_weights_cells_by_subject_share():
    soft = latent_mask(quarter_plus_sliver(), (2, 2), "soft").flatten()
    assert soft.tolist() == pytest.approx([1.0, 0.25, 1 / 64, 0.0])


@pytest.mark.parametrize("rule", MASK_RULES)
def test_no_rule_empties_a_thin_subject(rule):
    thin = torch.zeros(2, 1, 16, 16)
    thin[0, :, 0, 0] = 1  # one pixel: below half of any cell
    thin[1, :, :, 3] = 1  # a one-pixel line through two cells
    small = latent_mask(thin, (2, 2), rule)
    assert (small.flatten(1).sum(1) > 0).all()
    assert small[0].count_nonzero() == 1 and small[1].count_nonzero() == 2


@pytest.mark.parametrize("rule", MASK_RULES)
def test_an_empty_mask_stays_empty_and_a_full_one_full(rule):
    assert latent_mask(torch.zeros(1, 1, 8, 8), (2, 2), rule).sum() == 0
    assert latent_mask(torch.ones(1, 1, 8, 8), (2, 2), rule).sum() == 4


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="mask rule must be one of area, touched, soft, got 'half'"):
        latent_mask(torch.ones(1, 1, 8, 8), (2, 2), "half")
