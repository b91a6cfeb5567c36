"""Algorithm 3: caption edit, column alignment, attention injection, and the end-to-end command."""

import pytest
import torch
from conftest import EXAMPLE_SUBJECT
from PIL import Image

from hifilight.artifacts import SubjectArtifact
from hifilight.cli import main
from hifilight.conditioning import encode_text, null_tail
from hifilight.errors import HifiError
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.attention import AttentionStep, attention_control
from hifilight.sampling.generate import initial_latents
from hifilight.sampling.inversion import ddim_invert
from hifilight.sampling.null_text import NullTextSettings, PerStepUncond, null_text_inversion
from hifilight.sampling.replace import OWN, InjectCrossAttention, ReplacementConditioning, column_map, replace_word


def test_caption_edit_and_column_alignment(tiny):
    caption = "a photo of a sitting cat on a mat"
    assert replace_word(caption, "cat", "dog") == "a photo of a sitting dog on a mat"
    with pytest.raises(HifiError, match="does not occur .* pick one of: a, photo, of, sitting, cat, on, mat"):
        replace_word(caption, "bird", "dog")
    mapping = column_map(tiny.tokenizer, caption, "cat", "puppy", 5)  # char-level tokens: 3 -> 5 columns
    start = len(tiny.tokenizer("a photo of a sitting").input_ids) - 1
    assert mapping[:start].tolist() == list(range(start))  # prefix aligned
    assert (mapping[start : start + 5] == OWN).all() and (mapping[-5:] == OWN).all()  # w_g and c_s keep their own
    assert mapping[start + 5].item() == start + 3  # the rest shifted by the length difference


def test_injection_copies_mapped_source_columns_into_the_target_only():
    mapping = torch.tensor([0, 2, OWN, 3])
    ctl = InjectCrossAttention(mapping, steps={0})
    ctl.step, ctl.cfg = 0, True
    probs = torch.rand(4 * 2, 6, 4)  # [uncond_s, uncond_t, cond_s, cond_t] x 2 heads, 6 queries, 4 keys
    out = ctl("layer", probs, heads=2).view(4, 2, 6, 4)
    before = probs.view(4, 2, 6, 4)
    assert torch.equal(out[:3], before[:3])
    assert torch.equal(out[3][..., [0, 1, 3]], before[2][..., [0, 2, 3]])
    assert torch.equal(out[3][..., 2], before[3][..., 2])
    ctl.step = 1  # not an injected step
    assert torch.equal(ctl("layer", probs, heads=2), probs)
    only_up = InjectCrossAttention(mapping, steps={0}, layers="up_blocks")
    only_up.step = 0
    assert torch.equal(only_up("down_blocks.0.attn2.processor", probs, heads=2), probs)
    assert not torch.equal(only_up("up_blocks.1.attn2.processor", probs, heads=2), probs)


def test_source_branch_is_the_null_text_replay_and_injection_changes_the_target(tiny):
    engine = SamplingEngine(tiny.unet, DDIMSchedule.from_scheduler(tiny.scheduler, 4))
    c_r = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a cat"])
    c_g = encode_text(tiny.tokenizer, tiny.text_encoder, ["a photo of a dog"])
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    trajectory = ddim_invert(engine, initial_latents(0, (1, 4, 8, 8), "cpu") * 0.5, c_r)
    phis = null_text_inversion(engine, trajectory, c_r, phi, 7.5, NullTextSettings(inner_steps=2)).phis
    replay = engine.sample(trajectory[-1], c_r, phi, 7.5, callbacks=[PerStepUncond(phis)])
    c_s = null_tail(phi, 5) + 0.5

    def run(steps):
        ctl = InjectCrossAttention(column_map(tiny.tokenizer, "a photo of a cat", "cat", "dog", 5), steps)
        cbs = [ReplacementConditioning(c_r, c_g, c_s, None, None), PerStepUncond(phis), AttentionStep(ctl)]
        with attention_control(tiny.unet, ctl):
            return engine.sample(trajectory[-1].expand(2, -1, -1, -1), torch.cat([c_r, c_r]), phi, 7.5, cbs)

    injected, free = run(set(range(4))), run(set())
    assert torch.allclose(injected[0], replay[0], rtol=1e-4, atol=1e-4)  # the source is untouched
    assert not torch.allclose(injected[1], free[1], atol=1e-4)  # injection steers the target

    # no word swap and no subject embeddings: the target reproduces the null-text reconstruction
    ctl = InjectCrossAttention(column_map(tiny.tokenizer, "a photo of a cat", "cat", "cat", 5), set(range(4)))
    same = [ReplacementConditioning(c_r, c_r, c_r[0, -5:], None, None), PerStepUncond(phis), AttentionStep(ctl)]
    with attention_control(tiny.unet, ctl):
        both = engine.sample(trajectory[-1].expand(2, -1, -1, -1), torch.cat([c_r, c_r]), phi, 7.5, same)
    assert torch.equal(both[1], both[0])
    assert torch.allclose(both[1], replay[0], rtol=1e-4, atol=1e-4)


def test_replace_command(tiny, tmp_path, capsys):
    phi = encode_text(tiny.tokenizer, tiny.text_encoder, [""])
    art = SubjectArtifact(
        c_s=null_tail(phi, 5) + 0.1,
        phi_s=null_tail(phi, 5),
        metadata={"base_model": "tiny", "class_name": "dog", "resolution": 32},
    )
    subject = art.save(tmp_path / "dog.safetensors")
    args = [
        "replace",
        "--image",
        str(EXAMPLE_SUBJECT / "01.jpg"),
        "--subject",
        str(subject),
        "--source_word",
        "cat",
        "--caption",
        "a photo of a sitting cat",
        "--steps",
        "3",
        "--null_text.inner_steps",
        "1",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    assert "'a photo of a sitting cat' -> 'a photo of a sitting dog'" in capsys.readouterr().out
    assert Image.open(tmp_path / "out" / "edited.png").size == (32, 32)
    assert Image.open(tmp_path / "out" / "side_by_side.png").size == (96, 32)
    bad = [*args[:6], "bird", *args[7:-1], str(tmp_path / "other")]
    assert main(bad) == 2 and "does not occur" in capsys.readouterr().err
