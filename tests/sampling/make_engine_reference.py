"""Writes tests/sampling/engine_reference.safetensors: null-text inversion's phi_t and a reference-guided sample on the
tiny preset, made with the code of a given commit, so that a refactoring of who calls the UNet can be checked
against it (tests/sampling/test_engine_equivalence.py). Run: python tests/sampling/make_engine_reference.py"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from hifilight.conditioning import encode_text
from hifilight.models import load_components
from hifilight.sampling import DDIMSchedule, SamplingEngine
from hifilight.sampling.guidance import GuidanceSettings, ReferenceGuidance
from hifilight.sampling.inversion import ddim_invert
from hifilight.sampling.null_text import NullTextSettings, null_text_inversion

OUT = Path(__file__).resolve().parent / "engine_reference.safetensors"


def compute(guidance: float = 7.5) -> dict[str, torch.Tensor]:
    """The recorded quantities; `guidance` other than 7.5 is a perturbed run (the test shows it is caught)."""
    comps = load_components("tiny")
    engine = SamplingEngine(comps.unet, DDIMSchedule.from_scheduler(comps.scheduler, 6))
    g = torch.Generator().manual_seed(0)
    cond = encode_text(comps.tokenizer, comps.text_encoder, ["a photo of a dog"]).float()
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""]).float()
    trajectory = ddim_invert(engine, torch.randn(1, 4, 8, 8, generator=g) * 0.5, cond)
    nti = null_text_inversion(engine, trajectory, cond, phi, guidance, NullTextSettings(inner_steps=3))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 1:5] = 1
    out = {"phis": nti.phis}
    for reset in (True, False):
        guide = ReferenceGuidance(trajectory, mask, GuidanceSettings(5, 2, 3, reset_optimizer=reset))
        x_T = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        out[f"guided_reset{int(reset)}"] = engine.sample(x_T, cond, phi, guidance, callbacks=[guide])
        out[f"after_reset{int(reset)}"] = torch.tensor([guide.logs[0].after[t] for t in sorted(guide.logs[0].after)])
    return {k: v.contiguous() for k, v in out.items()}


if __name__ == "__main__":
    save_file(compute(), str(OUT))
    print(f"wrote {OUT}")
