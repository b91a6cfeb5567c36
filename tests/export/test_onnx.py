"""ONNX export: parity of each part with torch, and the onnxruntime sampler against the torch engine."""

import json

import pytest
import torch
from conftest import make_artifact

from hifilight.cli import main
from hifilight.export.onnx import export_onnx
from hifilight.export.ort import load_onnx_components
from hifilight.models import load_components
from hifilight.sampling.generate import generate, make_jobs

pytestmark = pytest.mark.numerical


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    return out, export_onnx(tiny, out)


def test_each_part_matches_torch(exported):
    out, diffs = exported
    assert set(diffs) == {"unet", "vae_decoder", "vae_encoder", "text_encoder"}
    assert all(d < 1e-4 for d in diffs.values()), diffs  # measured: 1.9e-6, 1.4e-5, ~1e-6, 1.2e-6
    parts = ("unet", "vae_decoder", "vae_encoder", "text_encoder")
    assert all((out / p / "model.onnx").is_file() for p in parts)  # the layout diffusers and Optimum read
    assert {p.name for p in out.iterdir()} >= {"tokenizer", "scheduler", "model_index.json", "hifilight_onnx.json"}


def _torch_pipeline(comps):
    from diffusers import StableDiffusionPipeline

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


def test_diffusers_onnx_pipeline_loads_the_export_and_matches_the_torch_pipeline(exported, tiny):
    """diffusers feeds int32 ids, a latent_sample input and its own 0.18215 VAE scale: the same latents give the
    torch pipeline's image (measured max difference ~1e-6 on the tiny preset)."""
    from diffusers import OnnxStableDiffusionImg2ImgPipeline, OnnxStableDiffusionPipeline

    pipe = OnnxStableDiffusionPipeline.from_pretrained(exported[0], provider="CPUExecutionProvider")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"prompt": "a photo of a dog", "height": 64, "width": 64, "num_inference_steps": 4, "output_type": "np"}
    got = pipe(latents=latents.numpy(), **kwargs).images
    want = _torch_pipeline(tiny)(latents=latents, **kwargs).images
    assert got.shape == want.shape == (1, 64, 64, 3)
    assert abs(got - want).max() < 1e-3
    img2img = OnnxStableDiffusionImg2ImgPipeline(**pipe.components)  # the vae_encoder is read too
    out = img2img(prompt="a dog", image=torch.rand(1, 3, 64, 64) * 2 - 1, num_inference_steps=4, output_type="np")
    assert out.images.shape == (1, 64, 64, 3)


def test_a_vae_with_another_scale_decodes_right_in_diffusers_and_in_hifilight(tiny, tmp_path):
    """ToySD's VAE scale is 0.42, diffusers' ONNX pipelines assume 0.18215: the export folds the ratio in."""
    import copy

    comps = copy.copy(tiny)
    comps.vae = copy.deepcopy(tiny.vae)
    comps.vae.register_to_config(scaling_factor=0.5)
    export_onnx(comps, tmp_path / "o", check=False)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = comps.vae.decode(latents / 0.5).sample
    got = load_onnx_components(tmp_path / "o").vae.decode(latents / 0.5).sample  # hifilight's engine
    assert (got - want).abs().max().item() < 1e-4
    from diffusers import OnnxRuntimeModel

    decoder = OnnxRuntimeModel.from_pretrained(tmp_path / "o" / "vae_decoder", provider_options=None)  # as diffusers
    assert (
        abs(decoder(latent_sample=(latents / 0.18215).numpy())[0] - want.numpy()).max() < 1e-4
    )  # its latents / 0.18215


def test_onnxruntime_sampler_matches_the_torch_engine_with_stepwise_embeddings(exported, tiny):
    """Same x_T, [c, c_s^t] per step: images agree to 1e-4 (measured ~1.5e-6 on the tiny preset)."""
    art = make_artifact(tiny, steps=4)
    art.c_s_t = art.c_s_t + 0.2 * torch.randn(art.c_s_t.shape, generator=torch.Generator().manual_seed(1))
    jobs = make_jobs(["a photo of a {}", "a {} in the snow"], "dog", seed=0, num_images=1)
    ort_comps = load_onnx_components(exported[0])
    want = generate(tiny, art, jobs, 4, 7.5, 64, progress=False, stepwise=True)
    got = generate(ort_comps, art, jobs, 4, 7.5, 64, progress=False, stepwise=True)
    assert (got - want).abs().max().item() < 1e-4


def test_export_command_and_predict_with_onnx(exported, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unet: max |onnxruntime - torch|" in printed and json.loads((out / "hifilight_onnx.json").read_text())
    assert "OnnxStableDiffusionPipeline" in printed  # the command says how diffusers loads it
    assert main(["export", "onnx", "--out", str(out)]) == 2  # kept unless --overwrite true
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "tflite"]) == 2
    art = make_artifact(load_components("tiny"), steps=4)
    subject = art.save(tmp_path / "s.safetensors")
    args = ["predict", "--subject", str(subject), "--prompts", '["a {}"]', "--steps", "4", "--resolution", "32"]
    assert main([*args, "--out_dir", str(tmp_path / "torch")]) == 0
    assert main([*args, "--out_dir", str(tmp_path / "ort"), "--onnx", str(out)]) == 0
    name = json.loads((tmp_path / "ort" / "predict.json").read_text())["images"][0]["file"]
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(tmp_path / "torch" / name), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "ort" / name), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # 8-bit rounding of images within 1e-4 of each other
