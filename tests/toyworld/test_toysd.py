"""ToySD: its tokenizer, its diffusers folder, and what the committed weights generate (read by the classifier)."""

import torch
from PIL import Image

from hifilight.toyworld.tokenizer import MAX_LENGTH, toy_tokenizer, vocabulary_words


def test_every_toyworld_word_is_one_token_and_other_words_still_tokenize():
    tok = toy_tokenizer()
    for word in vocabulary_words():
        assert tok.tokenize(word) == [word + "</w>"], word
    caption = "a blue star with yellow dots in front of a brick wall"
    assert len(tok(caption).input_ids) == len(caption.split()) + 2  # + BOS/EOS
    assert "".join(tok.tokenize("dog")).replace("</w>", "") == "dog"  # falls back to smaller pieces
    # HiFi Tuner's n=5 rows go after the caption: the longest ToyWorld caption leaves room for them
    assert len(caption.split()) + 2 + 5 <= MAX_LENGTH


# --- the committed weights (hifilight/assets/toyworld/toysd) ---------------------------------------------------
# Measured with `measure_prompt_following` below (25 DDIM steps, guidance 5, seeds 0-1, 8 backgrounds x 3 objects):
# see MIN_RATE for the stated rates.
OBJECTS = ("red circle", "blue square", "yellow star")


def measure_prompt_following(seeds=(0, 1)):
    """Share of ToySD images, read by the ToyWorld classifier, that show the asked background / colour / shape."""
    from hifilight.models import load_components
    from hifilight.sampling.generate import Job, generate
    from hifilight.toyworld.perception import ToyDinoEncoder
    from hifilight.toyworld.scenes import BACKGROUNDS

    comps = load_components("toysd")
    asks = [(obj, bg) for obj in OBJECTS for bg in BACKGROUNDS]
    jobs = [Job(t, t, s) for obj, bg in asks for t in [f"a {obj} {BACKGROUNDS[bg]}"] for s in seeds]
    images = generate(comps, None, jobs, steps=25, guidance=5.0, resolution=64, batch_size=16, progress=False)
    from hifilight.data.images import to_pil

    reads = ToyDinoEncoder("classifier_toysd").attributes([to_pil(x) for x in images])
    truth = [(obj, bg) for obj, bg in asks for _ in seeds]
    background = sum(r["background"] == bg for r, (_, bg) in zip(reads, truth, strict=True)) / len(reads)
    colour = sum(r["color"] == obj.split()[0] for r, (obj, _) in zip(reads, truth, strict=True)) / len(reads)
    shape = sum(r["shape"] == obj.split()[1] for r, (obj, _) in zip(reads, truth, strict=True)) / len(reads)
    return {"background": background, "color": colour, "shape": shape}


# Measured on the committed weights by measure_prompt_following() (48 images): background 0.979, colour 1.00,
# shape 0.771 (chance: 1/8, 1/8, 1/6); before the 4000-step continuation 0.958 / 1.00 / 0.708; the weights before
# those (old VAE, 10500 UNet steps in three runs): 1.00 / 1.00 / 0.375.
MIN_RATE = {"background": 0.9, "color": 0.9, "shape": 0.7}


def test_committed_toysd_loads_through_the_stable_diffusion_path():
    from diffusers import StableDiffusionPipeline

    from hifilight.models import load_components
    from hifilight.toyworld.toysd import LATENT, TOYSD

    comps = load_components("toysd")
    assert comps.unet.config.in_channels == LATENT and comps.vae_scale_factor == 4
    assert comps.tokenizer.tokenize("a star on the beach") == ["a</w>", "star</w>", "on</w>", "the</w>", "beach</w>"]
    pipe = StableDiffusionPipeline.from_pretrained(TOYSD, safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.sample_size == 16


def measure_subject_reconstruction(per_subject=8):
    """Share of the subjects' true renders that the judge still reads as the subject (all four attributes) after
    ToySD's VAE: the ceiling of any method's identity score, since every generated image leaves that decoder."""
    import numpy as np

    from hifilight.models import load_components
    from hifilight.toyworld.calibrate import reconstruct
    from hifilight.toyworld.dataset import SUBJECTS
    from hifilight.toyworld.fidelity import ToyJudge, subject_match
    from hifilight.toyworld.scenes import BACKGROUNDS, random_scene, render

    vae, judge = load_components("toysd").vae, ToyJudge()
    hits = []
    for k, obj in enumerate(SUBJECTS.values()):
        rng = np.random.default_rng([99, k])
        renders = [render(random_scene(rng, obj, bg))[0] for bg in list(BACKGROUNDS)[:per_subject]]
        probs, _ = judge.read(reconstruct(vae, [Image.fromarray(r) for r in renders]))
        hits.append(subject_match(probs, obj).all(1).float().mean().item())
    return sum(hits) / len(hits)


# Measured by measure_subject_reconstruction() on the committed VAE (object-weighted loss): 0.8125; the earlier VAE
# (plain loss): 0.344, which held every method's identity score near 0.
MIN_SUBJECT_RECONSTRUCTION = 0.7


def test_committed_vae_keeps_most_subjects_readable():
    assert measure_subject_reconstruction() >= MIN_SUBJECT_RECONSTRUCTION


def test_committed_toysd_draws_the_asked_background_and_colour_and_some_shapes():
    rates = measure_prompt_following()
    assert all(rates[k] >= MIN_RATE[k] for k in MIN_RATE), rates


def test_min_snr_weights_damp_only_the_low_noise_steps():
    from diffusers import DDPMScheduler

    from hifilight.toyworld.toysd_training import min_snr_weights

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.arange(0, 1000, 37)
    a = sched.alphas_cumprod[t]
    snr = a / (1 - a)
    w = min_snr_weights(sched, t, 5.0)
    assert torch.allclose(w[snr <= 5], torch.ones(int((snr <= 5).sum())))
    assert torch.allclose(w[snr > 5], 5 / snr[snr > 5])
    assert (snr > 5).any() and (snr <= 5).any() and bool((w[1:] >= w[:-1]).all())  # noisier -> weight closer to 1


def test_encode_latents_gives_the_asked_scale_and_records_it_for_decoding():
    from hifilight.toyworld.corpus import encode_latents
    from hifilight.toyworld.toysd import toy_vae

    torch.manual_seed(0)
    vae = toy_vae().eval()
    images = torch.rand(8, 3, 64, 64) * 2 - 1
    latents = encode_latents(vae, images, scale=0.3, chunk=3)
    assert abs(latents.std().item() - 0.3) < 1e-4
    with torch.no_grad():
        means = vae.encode(images).latent_dist.mean
    assert torch.allclose(latents, means * vae.config.scaling_factor, atol=1e-5)  # what the pipeline's decode undoes


def test_vae_loss_is_plain_l1_plus_l2_without_masks_and_weighs_object_pixels_with_them():
    import torch.nn.functional as F

    from hifilight.toyworld.vae_training import reconstruction_loss

    g = torch.Generator().manual_seed(0)
    x, recon = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    ones = torch.ones(2, 1, 8, 8)
    assert torch.allclose(reconstruction_loss(recon, x, ones), F.l1_loss(recon, x) + F.mse_loss(recon, x))
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :2, :] = 1  # a quarter of the pixels are "object"
    err = ((recon - x).abs() + (recon - x) ** 2).mean(1, keepdim=True)
    expected = (err[mask.bool()].sum() * 5 + err[~mask.bool()].sum()) / (5 * 32 + 96)  # weights 1 + 4 on the object
    assert torch.allclose(reconstruction_loss(recon, x, 1 + 4 * mask), expected)


def test_partial_captions_always_name_the_shape_and_leave_out_some_of_the_rest():
    import numpy as np

    from hifilight.toyworld.corpus import caption_variant
    from hifilight.toyworld.scenes import Scene, ToyObject

    scene = Scene(ToyObject("star", "blue", "dotted", "yellow"), "snow")
    rng = np.random.default_rng(0)
    old = [caption_variant(scene, rng, partial=0.0) for _ in range(2000)]
    new = [caption_variant(scene, rng, partial=0.2) for _ in range(2000)]
    known = {
        "",
        "a photo of a star",
        "a star in the snow",
        "a blue star with yellow dots",
        "a blue star with yellow dots in the snow",
    }
    assert set(old) == known  # partial=0: the earlier mix
    extra = [c for c in new if c not in known]
    assert 0.15 < len(extra) / len(new) < 0.25
    assert all("star" in c for c in extra) and {"a blue star", "a star with yellow dots in the snow"} <= set(extra)
    assert not any("blue" in c and "yellow" in c for c in extra)  # never the whole description


def test_train_denoiser_learns_on_cpu_and_checkpoints_at_the_asked_steps():
    from hifilight.toyworld.scenes import Scene, ToyObject
    from hifilight.toyworld.toysd import build
    from hifilight.toyworld.toysd_training import train_denoiser

    comps = build(0)
    before = comps["unet"].conv_in.weight.detach().clone()
    latents = torch.randn(4, 16, 16, 16) * 0.3
    scenes = [Scene(ToyObject("star", "blue"), "snow")] * 4
    saved = []
    train_denoiser(
        comps,
        latents,
        scenes,
        steps=4,
        batch=2,
        lr=1e-3,
        seed=0,
        log=lambda _: None,
        every=2,
        checkpoint=saved.append,
        partial=0.2,
        device="cpu",
    )
    assert saved == [2] and not torch.equal(before, comps["unet"].conv_in.weight)
    assert not comps["unet"].training and not comps["text_encoder"].training


def test_grow_attention_adds_text_attention_at_full_size_and_starts_as_the_trained_unet(tmp_path):
    from diffusers import UNet2DConditionModel

    from hifilight.toyworld.toysd import grow_attention, toy_unet

    torch.manual_seed(0)
    unet = toy_unet().eval()
    grown = grow_attention(unet).eval()
    assert grown.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert grown.config.up_block_types[-1] == "CrossAttnUpBlock2D"
    assert list(grown.config.only_cross_attention) == [True, False, False]  # the new block attends to the text only
    old = unet.state_dict()
    new = {k: v for k, v in grown.state_dict().items() if k not in old}
    assert new and all(".attentions." in k for k in new)
    assert all(torch.equal(v, old[k]) for k, v in grown.state_dict().items() if k in old)
    x, t, text = torch.randn(2, 16, 16, 16), torch.tensor([10, 700]), torch.randn(2, 12, 64)
    with torch.no_grad():
        assert torch.equal(grown(x, t, text).sample, unet(x, t, text).sample)
        grown.down_blocks[0].attentions[0].proj_out.weight.normal_()  # once trained, the new layer counts
        assert not torch.allclose(grown(x, t, text).sample, unet(x, t, text).sample)
    grown.save_pretrained(tmp_path)
    loaded = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, text).sample, grown(x, t, text).sample)
    assert grow_attention(grown) is grown
