"""ToySD: a small text-to-image latent diffusion model with Stable Diffusion's architecture (diffusers AutoencoderKL
+ UNet2DConditionModel, transformers CLIPTextModel + CLIPTokenizer, DDPM/DDIM noise schedule of SD v1), trained
here from scratch on ToyWorld renders and saved in the diffusers folder layout, so it loads through
`--model.pretrained hifilight/assets/toyworld/toysd` like any Stable Diffusion checkpoint.

Sizes: 64x64 images, a 4x-downsampling VAE (16x16x16 latents), a word-level tokenizer over ToyWorld's words (any
other word falls back to characters), 32-token contexts (room for HiFi Tuner's n=5 subject rows after every
caption). The subjects (`dataset.SUBJECTS`) are never shown in training: they are new objects for it.

`python -m hifilight.toyworld.toysd` (or `make toyworld-train`) retrains it from a seed; see `main` for the steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from hifilight.io import write_folder_atomic
from hifilight.models.tiny import BOS, EOS, build_components, bytes_to_unicode
from hifilight.toyworld.dataset import pretraining_objects
from hifilight.toyworld.models import to_input
from hifilight.toyworld.scenes import BACKGROUNDS, COLORS, SHAPES, Scene, random_scene, render

TOYSD = Path(__file__).resolve().parents[1] / "assets" / "toyworld" / "toysd"
SIZE = 64
MAX_LENGTH = 32
TEXT_HIDDEN = 64
LATENT = 16  # latent channels: SD's 4 at 4x downsampling (48x compression) blurs dots and stripes in a small VAE
EXTRA_WORDS = ("a", "an", "photo", "of", "the", "with", "and", "sks", "striped", "dotted", "checkered", "plain",
               "stripes", "dots", "checks", "object", "picture", "toy")  # fmt: skip


def vocabulary_words() -> list[str]:
    words = set(EXTRA_WORDS) | set(COLORS) | set(SHAPES)
    for phrase in BACKGROUNDS.values():
        words |= set(phrase.split())
    return sorted(words)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges learnt on `words` (most frequent pair first, ties by name) until each is one symbol: BPE
    then encodes each of these words to one token, and any other word to the pieces the merges allow."""
    symbols = [tuple(w[:-1]) + (w[-1] + "</w>",) for w in words]
    merges = []
    while any(len(s) > 1 for s in symbols):
        counts: dict[tuple[str, str], int] = {}
        for s in symbols:
            for pair in zip(s, s[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        symbols = [_merge(s, best) for s in symbols]
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if word[i : i + 2] == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def toy_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges are learnt on ToyWorld's words, so each of them is one token."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = learn_merges(vocabulary_words())
    tokens += [a + b for a, b in merges if a + b not in tokens]
    vocab = {tok: i for i, tok in enumerate(tokens + [BOS, EOS])}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH, pad_token=EOS)


def toy_text_encoder(vocab_size: int) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_HIDDEN,
            intermediate_size=4 * TEXT_HIDDEN,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )


def toy_vae() -> AutoencoderKL:
    # 4 norm groups: with one channel per group (16 groups on 16 channels) GroupNorm removes every channel's image
    # mean, and with it the colours the decoder must give back.
    vae = AutoencoderKL(
        block_out_channels=(16, 32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=4,
        sample_size=SIZE,
    )
    # The posterior's log-variance starts at -10 (std 0.007) instead of 0: a short training otherwise spends most of
    # its steps shrinking a unit noise on the latents, and decodes blurred images (the KL term keeps it learnable).
    with torch.no_grad():
        vae.quant_conv.weight[LATENT:] = 0
        vae.quant_conv.bias[LATENT:] = -10.0
    return vae


def toy_unet(widths: tuple[int, int, int] = (48, 96, 128), cross_attention_dim: int = TEXT_HIDDEN):
    """ToySD's UNet (v1's widths by default; v2's: `toysd2.toy_unet`) on the 16x16 latent. Cross-attention at 8x8
    and 4x4 only (SD also has it at full latent size): 1.6x faster to train on a CPU."""
    return UNet2DConditionModel(
        sample_size=SIZE // 4,
        in_channels=LATENT,
        out_channels=LATENT,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=16,
        norm_num_groups=16,
    )


def grow_attention(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """`unet` with cross-attention added at the full latent size (the blocks `toy_unet` leaves without it), as SD
    has it: a capacity lever that continues from trained weights. Every trained weight is kept and each new
    transformer's output projection starts at zero, so the grown UNet computes exactly what `unet` does (the
    transformer's residual passes its input through) until training moves the new layers. A UNet with
    cross-attention in every block is returned as it is."""
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}  # "_use_default_values" would win
    plain = {"DownBlock2D": "CrossAttnDownBlock2D", "UpBlock2D": "CrossAttnUpBlock2D"}
    new = [f"down_blocks.{i}.attentions." for i, b in enumerate(config["down_block_types"]) if b in plain]
    new += [f"up_blocks.{i}.attentions." for i, b in enumerate(config["up_block_types"]) if b in plain]
    if not new:
        return unet
    blocks = {k: [plain.get(b, b) for b in config[k]] for k in ("down_block_types", "up_block_types")}
    # the new blocks attend to the text only (no self-attention over the 16x16 tokens: 2.4x the step time on a CPU);
    # their attn1 is then a second text attention, which hifilight.sampling.attention (attn2 layers) does not record
    only = config["only_cross_attention"]
    only = list(only) if isinstance(only, list | tuple) else [only] * len(blocks["down_block_types"])
    only = [o or b in plain for o, b in zip(only, config["down_block_types"], strict=True)]
    grown = UNet2DConditionModel.from_config({**config, **blocks, "only_cross_attention": only})
    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or not all(k.startswith(tuple(new)) for k in missing):
        raise RuntimeError(f"grow_attention: weights that do not carry over: {unexpected or missing}")
    with torch.no_grad():
        for name, module in grown.named_modules():
            if name.startswith(tuple(new)) and name.endswith("proj_out"):
                module.weight.zero_()
                module.bias.zero_()
    return grown


def build(seed: int = 0) -> dict:
    return build_components(seed, toy_tokenizer(), toy_unet, toy_vae, toy_text_encoder)


def caption_variant(scene: Scene, rng: np.random.Generator, drop: float = 0.1, partial: float = 0.2) -> str:
    """The caption a training image is shown with: mostly the full one, sometimes a partial one (so prompts that
    leave out colour, pattern or background, like HiFi Tuner's "a photo of a star", are in distribution), and
    `drop` of the time the empty caption (for classifier-free guidance).

    `partial` of the time the caption names the shape with only some of the other attributes ("a blue star on the
    beach", "a star with yellow dots"): every held-out subject's colour-and-pattern combination was seen in
    pretraining only on *other* shapes, so a model that ties the shape to the rest of the description draws one of
    those shapes for the full description; captions that name the shape with a random subset of the rest make the
    shape word decide the shape on its own (attribute dropout; a choice of ours, 0 gives the earlier mix)."""
    u = rng.random()
    obj, where = scene.obj, BACKGROUNDS[scene.background]
    if u < drop:
        return ""
    if u < drop + 0.1:
        return f"a photo of a {obj.shape}"
    if u < drop + 0.2:
        return f"a {obj.shape} {where}"
    if u < drop + 0.2 + partial:
        return f"a {partial_words(obj, rng)}" + (f" {where}" if rng.random() < 0.5 else "")
    if u < drop + 0.3 + partial:
        return f"a {obj.words}"
    return scene.caption


def partial_words(obj, rng: np.random.Generator) -> str:
    """The object named by its shape and one of: its colour, its pattern (with its colour), or both colours."""
    if obj.pattern == "plain":
        return f"{obj.color} {obj.shape}"
    noun = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}[obj.pattern]
    return [
        f"{obj.color} {obj.shape}",
        f"{obj.shape} with {obj.pattern_color} {noun}",
        f"{obj.pattern} {obj.shape}",
        f"{obj.color} {obj.pattern} {obj.shape}",
    ][int(rng.integers(4))]


def render_corpus(n: int, seed: int, with_masks: bool = False) -> tuple[torch.Tensor, list, torch.Tensor | None]:
    """n renders of pretraining objects (subjects held out) as [-1, 1] tensors, their scenes and, `with_masks`, the
    objects' (N, 1, SIZE, SIZE) float masks from the same renders (else None)."""
    rng = np.random.default_rng(seed)
    objects = pretraining_objects()
    scenes = [random_scene(rng, objects[i]) for i in rng.integers(len(objects), size=n)]
    drawn = [render(s, SIZE) for s in scenes]
    images = to_input(np.stack([image for image, _ in drawn]))
    masks = torch.from_numpy(np.stack([mask for _, mask in drawn])).float()[:, None] if with_masks else None
    return images, scenes, masks


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L1 + L2 per element, averaged with per-pixel `weights` (N, 1, H, W); all ones: F.l1_loss + F.mse_loss."""
    err = (recon - x).abs() + (recon - x) ** 2
    return (err * weights).mean() / weights.mean()


def train_vae(
    vae: AutoencoderKL,
    images: torch.Tensor,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    crop: int = 64,
    kl_weight: float = 1e-6,
    masks: torch.Tensor | None = None,
    object_weight: float = 0.0,
    log=print,
) -> AutoencoderKL:
    """Reconstruction (L1 + L2) plus a small KL term, as in LDM's KL-regularised autoencoder without the GAN. The
    VAE is convolutional, so it can train on random `crop` x `crop` crops (cheaper, but it leaves edge artefacts).

    With `masks` (N, 1, H, W), object pixels weigh 1 + `object_weight` in the reconstruction loss: the object is
    ~15% of a ToyWorld image and its dots and stripes a fraction of that, so a plain mean spends the VAE's capacity
    on the backgrounds, and the subjects' second colour is what it loses first."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    vae.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g)
        x = images[idx]
        w = torch.ones_like(x[:, :1]) if masks is None else 1 + object_weight * masks[idx]
        if crop < x.shape[-1]:
            i, j = torch.randint(0, (x.shape[-1] - crop) // 8 + 1, (2,), generator=g).tolist()
            x, w = (a[..., 8 * i : 8 * i + crop, 8 * j : 8 * j + crop] for a in (x, w))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=g)).sample
        loss = reconstruction_loss(recon, x, w) + kl_weight * posterior.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}: loss {loss.item():.4f}")
    return vae.eval()


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, n: int = 256, seed: int = 12345) -> dict[str, float]:
    """The ToyWorld classifier's accuracy on VAE reconstructions of fresh renders (what the VAE keeps readable)."""
    from hifilight.toyworld.models import accuracy

    scores = accuracy(
        load_classifier(), n, seed, lambda x: vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    )
    return {k: round(v, 3) for k, v in scores.items()}


def load_classifier():
    from hifilight.toyworld.models import load

    return load("classifier_toysd")


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (N, C, H, W) batch."""
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def adapt_classifier(vae: AutoencoderKL, steps: int, seed: int, batch: int = 64, lr: float = 3e-4, log=print):
    """Fine-tune the committed ToyWorld classifier (saved as `classifier_toysd`, the judge of ToySD's images) so that
    it reads images that went through ToySD's decoder: half
    of each batch is VAE reconstructions, a quarter blurred (sigma 0.3-1.2 px), a quarter clean renders. Without
    this the readers, trained on crisp renders only, misread the decoder's slightly soft edges."""
    from hifilight.toyworld.models import classifier_loss, load, sample

    model = load("classifier").train()
    rng = np.random.default_rng([seed, 7])
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        x, labels, _ = sample(rng, batch)
        with torch.no_grad():
            half, quarter = batch // 2, batch // 4
            x[:half] = vae.decode(vae.encode(x[:half]).latent_dist.mean).sample.clamp(-1, 1)
            x[half : half + quarter] = blur(x[half : half + quarter], float(0.3 + 0.9 * torch.rand((), generator=g)))
        loss = classifier_loss(model, x, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"classifier adaptation step {step}: loss {loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, scale: float = 1.0, chunk: int = 256) -> torch.Tensor:
    """Posterior means times a scaling factor that gives the latents standard deviation `scale` (SD's 0.18215 gives
    about 1). ToyWorld's flat backgrounds stay readable in x_t up to t ~ T at unit scale, so the UNet learns to copy
    the background from the noise instead of reading it from the caption, and sampling from pure noise then ignores
    the prompt's background; a smaller scale lowers every step's SNR by scale^2 (the "input scaling" of Chen 2023,
    "On the importance of noise scheduling for diffusion models"), with no change to the scheduler."""
    means = torch.cat([vae.encode(images[i : i + chunk]).latent_dist.mean for i in range(0, len(images), chunk)])
    vae.register_to_config(scaling_factor=float(scale / means.std()))
    return means * vae.config.scaling_factor


def tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids


def min_snr_weights(noise_sched: DDPMScheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights of an epsilon loss: min(SNR_t, gamma) / SNR_t, so 1 where SNR_t <= gamma."""
    snr = compute_snr(noise_sched, t)
    return snr.clamp(max=gamma) / snr


def train_denoiser(
    comps: dict,
    latents: torch.Tensor,
    scenes: list,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    log=print,
    every: int = 0,
    checkpoint=None,
    snr_gamma: float = 0.0,
    partial: float = 0.0,
    device: str = "cpu",
    bf16: bool = False,
) -> None:
    """Epsilon-prediction diffusion loss on SD v1's noise schedule; the UNet and the text encoder train together
    (a pretrained text encoder does not exist here).

    `snr_gamma` > 0 weights each sample by min(SNR_t, gamma) / SNR_t (Min-SNR, Hang et al. 2023, as diffusers'
    `--snr_gamma`): the plain epsilon loss is dominated by low-noise steps, where the caption barely changes the
    answer, so what the prompt decides (background, shape) is learnt slowly without it. `partial`: the share of
    partial captions (see `caption_variant`). On CUDA, `bf16` runs the forward pass under bf16 autocast (weights
    and optimizer stay fp32); noise, timesteps and batches are drawn on the CPU, so a seed picks the same data on
    any device."""
    unet, text_encoder, tokenizer = comps["unet"].to(device), comps["text_encoder"].to(device), comps["tokenizer"]
    noise_sched = DDPMScheduler.from_config(comps["scheduler"].config)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)
    unet.train()
    text_encoder.train()
    for step in range(steps):
        idx = rng.integers(len(latents), size=batch)
        x0 = latents[idx]
        ids = tokenize(tokenizer, [caption_variant(scenes[i], rng, partial=partial) for i in idx])
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,), generator=g)
        x_t = noise_sched.add_noise(x0, noise, t)
        with autocast:
            pred = unet(x_t.to(device), t.to(device), text_encoder(ids.to(device))[0]).sample
        loss = F.mse_loss(pred.float(), noise.to(device), reduction="none").mean(dim=(1, 2, 3))
        if snr_gamma > 0:
            loss = loss * min_snr_weights(noise_sched, t, snr_gamma).to(device)
        loss = loss.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}: loss {loss.item():.4f}")
        if checkpoint and every and (step + 1) % every == 0 and step + 1 < steps:
            unet.eval()
            text_encoder.eval()
            checkpoint(step + 1)
            unet.train()
            text_encoder.train()
    unet.eval().cpu()
    text_encoder.eval().cpu()


def curve_point(folder: Path, step: int, images: int = 1) -> dict:
    """One point of the learning curve: the calibration of the ToySD saved in `folder` on the validation subjects
    (the 8 background prompts, `images` each): text oracle and class-word floor, identity and per-attribute."""
    from hifilight.models import load_components
    from hifilight.toyworld.calibrate import FLOOR, ORACLE, calibrate
    from hifilight.toyworld.dataset import VALIDATION_SUBJECTS

    rows = calibrate(load_components(str(folder)), VALIDATION_SUBJECTS, n=images)["rows"]
    point = {"step": step, "split": "val"}
    for name in (ORACLE, FLOOR):
        point[name] = {k: round(v, 3) for k, v in rows[name].items() if k != "cells" and v is not None}
    return point


def save(comps: dict, out: Path, info: dict) -> Path:
    """Write the diffusers pipeline folder layout (model_index.json + one subfolder per component), atomically."""

    def write(tmp: Path) -> None:
        for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            comps[name].save_pretrained(tmp / name)
        index = {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n")

    write_folder_atomic(out, write, overwrite=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="hifilight toyworld train toysd", description="Train ToySD from scratch on ToyWorld renders."
    )
    parser.add_argument("--images", type=int, default=40000)
    parser.add_argument("--vae_images", type=int, default=10000)
    parser.add_argument("--vae_cycles", type=int, default=1, help="one-cycle schedules, each a warm restart")
    parser.add_argument("--vae_steps", type=int, default=6000, help="steps per cycle")
    parser.add_argument("--vae_batch", type=int, default=32)
    parser.add_argument("--vae_crop", type=int, default=32)
    parser.add_argument("--vae_lr", type=float, default=1e-3)
    parser.add_argument(
        "--vae_object_weight",
        type=float,
        default=4.0,
        help="object pixels weigh 1 + this in the VAE loss (see train_vae; 0: plain mean)",
    )
    parser.add_argument("--vae_from", type=Path, default=None, help="reuse this folder's vae/ instead of training")
    parser.add_argument(
        "--init_from",
        type=Path,
        default=None,
        help="continue training the UNet and text encoder of this ToySD folder (its VAE is kept)",
    )
    parser.add_argument(
        "--grow_attention",
        action="store_true",
        help="add text cross-attention at the full latent size (see grow_attention); with --init_from the grown "
        "UNet starts as the folder's exactly",
    )
    parser.add_argument("--adapt_steps", type=int, default=400, help="classifier adaptation to the VAE (0: skip)")
    parser.add_argument("--unet_steps", type=int, default=10000)
    parser.add_argument("--checkpoint_every", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--latent_scale", type=float, default=0.3, help="latent std the UNet sees (see encode_latents)")
    parser.add_argument("--snr_gamma", type=float, default=5.0, help="Min-SNR loss weighting (0: plain loss)")
    parser.add_argument(
        "--partial_captions",
        type=float,
        default=0.2,
        help="share of partial captions (see caption_variant; 0: the earlier caption mix)",
    )
    parser.add_argument("--unet_lr", type=float, default=1e-3)
    parser.add_argument(
        "--curve_images",
        type=int,
        default=1,
        help="images per prompt at each learning-curve point "
        "(0: no curve); a point is measured at every checkpoint, on the validation subjects",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the UNet training (CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=TOYSD)
    args = parser.parse_args(argv)
    if args.latent_scale <= 0 or args.snr_gamma < 0:
        parser.error(f"--latent_scale must be > 0 and --snr_gamma >= 0, got {args.latent_scale} and {args.snr_gamma}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here; pass --device cpu (or auto)")
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu, cuda[:N] or auto, got {args.device!r}")
    if not 0 <= args.partial_captions <= 0.6:
        parser.error(f"--partial_captions must be in [0, 0.6], got {args.partial_captions}")
    if args.vae_object_weight < 0:
        parser.error(f"--vae_object_weight must be >= 0, got {args.vae_object_weight}")
    for flag, folder, sub in (("--init_from", args.init_from, "unet"), ("--vae_from", args.vae_from, "vae")):
        if folder is not None and not (folder / sub / "config.json").is_file():
            parser.error(f"{flag} {folder}: no {sub}/config.json there; pass a ToySD folder (diffusers layout)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    comps = build(args.seed)
    if args.init_from:
        comps["unet"] = UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet")
        comps["text_encoder"] = CLIPTextModel.from_pretrained(args.init_from, subfolder="text_encoder")
        args.vae_from = args.vae_from or args.init_from
    if args.grow_attention:
        comps["unet"] = grow_attention(comps["unet"])
    if args.vae_from:
        comps["vae"] = AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae").eval()
    else:
        vae_images, _, masks = render_corpus(args.vae_images, args.seed, with_masks=args.vae_object_weight > 0)
        for cycle in range(args.vae_cycles):
            train_vae(
                comps["vae"],
                vae_images,
                args.vae_steps,
                args.vae_batch,
                args.vae_lr,
                args.seed + cycle,
                crop=args.vae_crop,
                masks=masks,
                object_weight=args.vae_object_weight,
            )
        del vae_images, masks
    images, scenes, _ = render_corpus(args.images, args.seed + 1)
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if args.init_from and (args.init_from / "training.json").is_file():  # keep the record of the earlier runs
        info["continued_from"] = json.loads((args.init_from / "training.json").read_text())
    if args.adapt_steps:
        from hifilight.toyworld import models as toy_models

        comps["vae"].requires_grad_(False)
        toy_models.save(adapt_classifier(comps["vae"], args.adapt_steps, args.seed), "classifier_toysd")
        comps["vae"].requires_grad_(True)
        info["classifier_toysd_accuracy_fresh_renders"] = toy_models.accuracy(load_classifier())
    info["vae_reconstruction_accuracy"] = reconstruction_accuracy(comps["vae"])
    print(f"VAE reconstructions read by the classifier: {info['vae_reconstruction_accuracy']}")
    latents = encode_latents(comps["vae"], images, args.latent_scale)
    info["vae_seconds"] = round(time.perf_counter() - start)

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    info["device"] = device
    info["device_name"] = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu x {args.threads} threads"
    info["learning_curve"] = []

    def checkpoint(step: int) -> None:
        save(comps, args.out, info | {"unet_steps_done": step, "seconds": round(time.perf_counter() - start)})
        if args.curve_images:
            info["learning_curve"].append(curve_point(args.out, step, args.curve_images))
            print(f"learning curve: {json.dumps(info['learning_curve'][-1])}", flush=True)

    train_denoiser(
        comps,
        latents,
        scenes,
        args.unet_steps,
        args.batch,
        args.unet_lr,
        args.seed,
        every=args.checkpoint_every,
        checkpoint=checkpoint,
        snr_gamma=args.snr_gamma,
        partial=args.partial_captions,
        device=device,
        bf16=args.bf16,
    )
    info |= {"unet_steps_done": args.unet_steps, "seconds": round(time.perf_counter() - start)}
    save(comps, args.out, info)
    if args.curve_images:
        info["learning_curve"].append(curve_point(args.out, args.unet_steps, args.curve_images))
        save(comps, args.out, info)
    print(f"ToySD: {info['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
