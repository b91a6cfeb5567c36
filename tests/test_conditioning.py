import pytest
import torch

from hifilight.conditioning import check_room, encode_text, null_tail, splice_subject
from hifilight.errors import HifiError


def test_splice_replaces_exactly_the_last_n_rows():
    c = torch.randn(2, 77, 8)
    c_s = torch.randn(5, 8)
    out = splice_subject(c, c_s)
    assert out.shape == c.shape
    assert torch.equal(out[:, :-5], c[:, :-5])
    assert torch.equal(out[0, -5:], c_s) and torch.equal(out[1, -5:], c_s)


def test_splice_passes_gradients_to_c_s_only():
    c = torch.randn(1, 77, 8, requires_grad=True)
    c_s = torch.zeros(3, 8, requires_grad=True)
    splice_subject(c, c_s).pow(2).sum().backward()
    assert c_s.grad is not None and c_s.grad.abs().sum() == 0  # d/dc_s of sum(c_s^2) at 0
    assert torch.equal(c.grad[:, -3:], torch.zeros(1, 3, 8))
    assert torch.equal(c.grad[:, :-3], 2 * c[:, :-3].detach())


def test_null_tail_is_the_last_rows_of_phi(tiny):
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    assert torch.equal(null_tail(phi, 5), phi[0, -5:])
    with pytest.raises(HifiError, match="num_tokens"):
        null_tail(phi, 0)


def test_caption_that_reaches_the_subject_rows_is_refused(tiny):
    check_room(tiny.tokenizer, "a photo of a dog", 5)
    with pytest.raises(HifiError, match="subject tokens"):
        check_room(tiny.tokenizer, "x" * 71, 5)  # 71 chars + BOS + EOS = 73 > 72
