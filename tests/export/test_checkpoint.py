"""Single-file checkpoints: the exact inverse of diffusers' own single-file conversion, and an image from
`from_single_file` equal to the folder's."""

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import load_file

from hifilight.cli import main
from hifilight.export.checkpoint import save_checkpoint, to_original


def _pipeline(comps):
    return StableDiffusionPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=comps.unet,
        scheduler=comps.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@pytest.mark.parametrize("name", ["tiny", "toysd"])  # two UNet shapes: tiny (1 layer per block), ToySD
def test_diffusers_conversion_of_the_file_gives_back_every_tensor(name):
    from hifilight.models import load_components

    comps = load_components(name)
    state = to_original(comps.unet, comps.vae, comps.text_encoder)
    for part, convert in ((comps.unet, convert_ldm_unet_checkpoint), (comps.vae, convert_ldm_vae_checkpoint)):
        back, want = convert(state, dict(part.config)), part.state_dict()
        assert set(back) == set(want)
        assert all(torch.equal(back[k].reshape(want[k].shape), want[k]) for k in want)
    assert sum(k.startswith("cond_stage_model.transformer.text_model.") for k in state) == len(
        comps.text_encoder.state_dict()
    )


def test_from_single_file_generates_the_folders_image(tiny, tmp_path):
    folder = tmp_path / "folder"
    pipe = _pipeline(tiny)
    pipe.save_pretrained(folder)  # stands for a DreamBooth output folder
    assert (
        main(["export", "checkpoint", "--model.pretrained", str(folder), "--out", str(tmp_path / "m.safetensors")]) == 0
    )
    single = StableDiffusionPipeline.from_single_file(
        str(tmp_path / "m.safetensors"),
        config=str(folder),
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
    )
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"prompt": "a photo of a dog", "height": 64, "width": 64, "num_inference_steps": 3, "output_type": "np"}
    assert abs(single(latents=latents, **kwargs).images - pipe(latents=latents, **kwargs).images).max() == 0


def test_checkpoint_command_checks_its_output_and_writes_half(tiny, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["export", "checkpoint", "--out", str(out), "--half", "true"]) == 0
    assert "from_single_file" in capsys.readouterr().out
    assert {v.dtype for v in load_file(out).values()} == {torch.float16}
    before = out.read_bytes()
    assert main(["export", "checkpoint", "--out", str(out)]) == 2  # kept unless --overwrite true
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "checkpoint", "--out", str(tmp_path / "m.ckpt")]) == 2
    assert "written as .safetensors" in capsys.readouterr().err
    assert save_checkpoint(tiny, tmp_path / "n.safetensors") == len(load_file(tmp_path / "n.safetensors"))


def test_an_sdxl_folder_exports_to_a_file_diffusers_sdxl_loads_with_the_same_image(tmp_path, capsys):
    """SDXL's original layout: every component comes back from `StableDiffusionXLPipeline.from_single_file` equal
    (the second text encoder through OpenCLIP's fused q/k/v), and so does the image. tiny-xl's two text encoders
    have different widths (as SDXL's), which is also how diffusers tells them apart in the file."""
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    from hifilight.models import load_components
    from hifilight.models.sdxl import save_pipeline, sdxl_pipeline

    folder, other, out = tmp_path / "xl", tmp_path / "other", tmp_path / "xl.safetensors"
    comps = load_components("tiny-xl")
    save_pipeline(sdxl_pipeline(comps), folder)  # stands for an SDXL DreamBooth folder
    assert main(["export", "checkpoint", "--model.pretrained", str(folder), "--out", str(out)]) == 0
    assert "StableDiffusionXLPipeline.from_single_file" in capsys.readouterr().out
    keys = load_file(out)
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys  # the added text-time embedding
    with torch.no_grad():  # the config folder's own weights differ: everything must come from the file
        for module in (comps.unet, comps.vae, *comps.text_encoder.parts):
            for p in module.parameters():
                p.add_(1.0)
    save_pipeline(sdxl_pipeline(comps), other)
    single = StableDiffusionXLPipeline.from_single_file(str(out), config=str(other), local_files_only=True)
    folder_pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(folder_pipe, name).state_dict(), getattr(single, name).state_dict()
        assert set(got) == set(want), name
        assert all(torch.equal(got[k], want[k]) for k in want), name
    for pipe in (single, folder_pipe):
        pipe.scheduler = DDIMScheduler.from_config(folder_pipe.scheduler.config)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"prompt": "a photo of a dog", "height": 64, "width": 64, "num_inference_steps": 3, "output_type": "np"}
    assert abs(single(latents=latents, **kwargs).images - folder_pipe(latents=latents, **kwargs).images).max() == 0
