"""Who calls the UNet may change, the numbers may not: null-text inversion (Eq. 4) and reference guidance (Eq. 10)
against outputs recorded before the engine took over their UNet calls (make_engine_reference.py, tiny preset)."""

import torch
from make_engine_reference import OUT, compute
from safetensors.torch import load_file


def test_null_text_and_reference_guidance_match_the_recorded_outputs():
    want, got = load_file(OUT), compute()
    assert set(got) == set(want)
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, rtol=1e-4), (key, (got[key] - want[key]).abs().max())
