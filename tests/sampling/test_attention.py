"""Cross-attention processors: exact probabilities, no effect when only recording, clean removal."""

import pytest
import torch

from hifilight.conditioning import encode_text
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.attention import AttentionController, AttentionStep, AttentionStore, attention_control
from hifilight.sampling.generate import initial_latents

LAYER = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"


class Capture(AttentionController):
    def __init__(self):
        super().__init__()
        self.probs = {}

    def __call__(self, name, probs, heads):
        self.probs.setdefault(name, probs.detach().clone())
        return probs


def _inputs(tiny):
    cond = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    return initial_latents(0, (1, 4, 8, 8), "cpu"), cond, phi


def test_probabilities_sum_to_one_and_match_a_direct_computation(tiny):
    x, cond, _ = _inputs(tiny)
    attn = tiny.unet.get_submodule(LAYER.removesuffix(".processor"))
    seen = {}
    hook = attn.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(h=args[0]), with_kwargs=True)
    try:
        with attention_control(tiny.unet, Capture()) as ctl, torch.no_grad():
            tiny.unet(x, 500, encoder_hidden_states=cond)
    finally:
        hook.remove()
    assert all(name.endswith("attn2.processor") for name in ctl.probs)
    probs = ctl.probs[LAYER]  # (batch*heads, queries, keys)
    assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-5)
    # direct: softmax(Q K^T / sqrt(d)) per head from the layer's own projections
    q, k = attn.to_q(seen["h"]), attn.to_k(cond)
    heads, d = attn.heads, q.shape[-1] // attn.heads
    q = q.view(1, -1, heads, d).transpose(1, 2)
    k = k.view(1, -1, heads, d).transpose(1, 2)
    direct = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1).reshape(heads, q.shape[2], k.shape[2])
    assert torch.allclose(probs, direct, atol=1e-5)


def test_recording_does_not_change_sampling_and_processors_are_restored(tiny):
    x, cond, phi = _inputs(tiny)
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, 5))
    before = {k: type(v) for k, v in tiny.unet.attn_processors.items()}
    plain = engine.sample(x, cond, phi, 7.5)
    store = AttentionStore({0, 4}, [72, 73, 74, 75, 76])
    with attention_control(tiny.unet, store):
        recorded = engine.sample(x, cond, phi, 7.5, callbacks=[AttentionStep(store)])
    assert torch.allclose(plain, recorded, rtol=1e-4, atol=1e-4)  # bmm vs SDPA rounding only
    assert {k: type(v) for k, v in tiny.unet.attn_processors.items()} == before
    maps = store.maps()
    assert set(maps) == {0, 4} and maps[0].shape == (1, 5, 8, 8)  # conditional half only, largest map size
    with pytest.raises(RuntimeError), attention_control(tiny.unet, store):
        raise RuntimeError("boom")
    assert {k: type(v) for k, v in tiny.unet.attn_processors.items()} == before


def test_store_filters_layers_by_resolution(tiny):
    x, cond, phi = _inputs(tiny)
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, 2))
    only4 = AttentionStore({1}, [76], res=4)
    with attention_control(tiny.unet, only4):
        engine.sample(x, cond, phi, 7.5, callbacks=[AttentionStep(only4)])
    assert only4.maps()[1].shape == (1, 1, 4, 4) and only4.sizes == {4, 8}
    none = AttentionStore({1}, [76], res=16)
    with attention_control(tiny.unet, none):
        engine.sample(x, cond, phi, 7.5, callbacks=[AttentionStep(none)])
    with pytest.raises(ValueError, match="layer sizes are \\[4, 8\\]"):
        none.maps()
