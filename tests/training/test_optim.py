"""The fits' AdamW: fused where the parameters allow it, and the same update as torch's default loop."""

import pytest
import torch

from hifilight.training.optim import adamw


@pytest.mark.numerical
def test_fused_adamw_takes_the_steps_of_the_per_tensor_loop():
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    loop_params = [torch.nn.Parameter(t.clone()) for t in start]
    fused = adamw(fused_params, 1e-2, 1e-2)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, weight_decay=1e-2, foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        grads = [torch.randn_like(t) for t in start]
        for params, opt in ((fused_params, fused), (loop_params, loop)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    assert not torch.equal(fused_params[0], start[0])  # the steps moved the weights
    # another kernel's rounding: measured at most 4e-9 apart after 5 steps
    for a, b in zip(fused_params, loop_params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_parameters_the_fused_kernel_cannot_take_use_the_default_loop():
    assert adamw([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], 1e-3, 0.0).defaults["fused"] is None
