"""ToySD's (v1) training from a seed: the VAE (`vae_training`), the judge adapted to its decoder, then the UNet and
the text encoder together on the epsilon loss (`train_denoiser`), with a learning curve on the validation subjects at
every checkpoint. `hifilight toyworld train toysd` runs `train(ToySDArgs(...))`; ToySD v2 (`toysd2`) reuses the
denoising step's pieces.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr
from transformers import CLIPTextModel

from hifilight.errors import HifiError
from hifilight.toyworld.corpus import caption_variant, encode_latents, render_corpus
from hifilight.toyworld.tokenizer import tokenize
from hifilight.toyworld.toysd import TOYSD, build, grow_attention, save
from hifilight.toyworld.vae_training import adapt_classifier, load_classifier, reconstruction_accuracy, train_vae


@dataclass
class ToySDArgs:
    """Options of `hifilight toyworld train toysd` (ToySD v1 from scratch on ToyWorld renders).

    Args:
        images: renders in the UNet's training corpus.
        vae_images: renders in the VAE's training corpus.
        vae_cycles: one-cycle schedules, each a warm restart.
        vae_steps: VAE steps per cycle.
        vae_batch: VAE batch size.
        vae_crop: VAE training crop in pixels.
        vae_lr: VAE learning rate.
        vae_object_weight: object pixels weigh 1 + this in the VAE loss (see train_vae; 0: plain mean).
        vae_from: reuse this folder's vae/ instead of training one.
        init_from: continue training the UNet and text encoder of this ToySD folder (its VAE is kept).
        grow_attention: add text cross-attention at the full latent size (see toysd.grow_attention); with
            --init_from the grown UNet starts as the folder's exactly.
        adapt_steps: classifier adaptation to the VAE (0: skip).
        unet_steps: UNet (and text encoder) steps.
        checkpoint_every: steps between checkpoints (each adds a learning-curve point).
        batch: UNet batch size.
        latent_scale: latent std the UNet sees (see corpus.encode_latents).
        snr_gamma: Min-SNR loss weighting (0: the plain loss).
        partial_captions: share of partial captions (see corpus.caption_variant; 0: the earlier caption mix).
        unet_lr: the UNet's peak learning rate (one-cycle).
        curve_images: images per prompt at each learning-curve point (0: no curve); a point is measured at every
            checkpoint, on the validation subjects.
        device: cpu, cuda or auto (cuda when available).
        bf16: bf16 autocast for the UNet training (CUDA).
        seed: seed of the weights, the corpus and the batches.
        threads: CPU threads.
        out: the ToySD folder to write (diffusers layout).
    """

    images: int = 40000
    vae_images: int = 10000
    vae_cycles: int = 1
    vae_steps: int = 6000
    vae_batch: int = 32
    vae_crop: int = 32
    vae_lr: float = 1e-3
    vae_object_weight: float = 4.0
    vae_from: Path | None = None
    init_from: Path | None = None
    grow_attention: bool = False
    adapt_steps: int = 400
    unet_steps: int = 10000
    checkpoint_every: int = 2000
    batch: int = 32
    latent_scale: float = 0.3
    snr_gamma: float = 5.0
    partial_captions: float = 0.2
    unet_lr: float = 1e-3
    curve_images: int = 1
    device: str = "auto"
    bf16: bool = False
    seed: int = 0
    threads: int = 2
    out: Path = TOYSD

    def check(self) -> None:
        if self.latent_scale <= 0 or self.snr_gamma < 0:
            raise HifiError(f"--latent_scale must be > 0 and --snr_gamma >= 0, got {self.latent_scale} and "
                            f"{self.snr_gamma}")  # fmt: skip
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HifiError(f"--device {self.device}: no CUDA device here; pass --device cpu (or auto)")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise HifiError(f"--device must be cpu, cuda[:N] or auto, got {self.device!r}")
        if not 0 <= self.partial_captions <= 0.6:
            raise HifiError(f"--partial_captions must be in [0, 0.6], got {self.partial_captions}")
        if self.vae_object_weight < 0:
            raise HifiError(f"--vae_object_weight must be >= 0, got {self.vae_object_weight}")
        for flag, folder, sub in (("--init_from", self.init_from, "unet"), ("--vae_from", self.vae_from, "vae")):
            if folder is not None and not (Path(folder) / sub / "config.json").is_file():
                raise HifiError(f"{flag} {folder}: no {sub}/config.json there; pass a ToySD folder (diffusers layout)")


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


def train(args: ToySDArgs, log=print) -> Path:
    """Train ToySD from a seed into `args.out` (diffusers layout, with training.json: the arguments, the readers'
    accuracy, the learning curve); returns the folder."""
    args.check()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    comps = initial_components(args)
    images, scenes, _ = render_corpus(args.images, args.seed + 1)
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()}
    if args.init_from and (Path(args.init_from) / "training.json").is_file():  # keep the record of the earlier runs
        info["continued_from"] = json.loads((Path(args.init_from) / "training.json").read_text())
    info |= adapt_judge(comps["vae"], args)
    log(f"VAE reconstructions read by the classifier: {info['vae_reconstruction_accuracy']}")
    latents = encode_latents(comps["vae"], images, args.latent_scale)
    info["vae_seconds"] = round(time.perf_counter() - start)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    info["device"] = device
    info["device_name"] = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu x {args.threads} threads"
    info["learning_curve"] = []

    def checkpoint(step: int) -> None:
        save(comps, Path(args.out), info | {"unet_steps_done": step, "seconds": round(time.perf_counter() - start)})
        if args.curve_images:
            info["learning_curve"].append(curve_point(Path(args.out), step, args.curve_images))
            log(f"learning curve: {json.dumps(info['learning_curve'][-1])}")

    train_denoiser(comps, latents, scenes, args.unet_steps, args.batch, args.unet_lr, args.seed, log,
                   every=args.checkpoint_every, checkpoint=checkpoint, snr_gamma=args.snr_gamma,
                   partial=args.partial_captions, device=device, bf16=args.bf16)  # fmt: skip
    info |= {"unet_steps_done": args.unet_steps, "seconds": round(time.perf_counter() - start)}
    save(comps, Path(args.out), info)
    if args.curve_images:
        info["learning_curve"].append(curve_point(Path(args.out), args.unet_steps, args.curve_images))
        save(comps, Path(args.out), info)
    log(f"ToySD: {info['seconds']} s -> {args.out}")
    return Path(args.out)


def initial_components(args: ToySDArgs) -> dict:
    """Seeded components; the UNet and text encoder of --init_from, grown attention, and a VAE reused (--vae_from,
    or --init_from's) or trained here."""
    comps = build(args.seed)
    vae_from = args.vae_from
    if args.init_from:
        comps["unet"] = UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet")
        comps["text_encoder"] = CLIPTextModel.from_pretrained(args.init_from, subfolder="text_encoder")
        vae_from = vae_from or args.init_from
    if args.grow_attention:
        comps["unet"] = grow_attention(comps["unet"])
    if vae_from:
        comps["vae"] = AutoencoderKL.from_pretrained(vae_from, subfolder="vae").eval()
        return comps
    vae_images, _, masks = render_corpus(args.vae_images, args.seed, with_masks=args.vae_object_weight > 0)
    for cycle in range(args.vae_cycles):
        train_vae(comps["vae"], vae_images, args.vae_steps, args.vae_batch, args.vae_lr, args.seed + cycle,
                  crop=args.vae_crop, masks=masks, object_weight=args.vae_object_weight)  # fmt: skip
    return comps


def adapt_judge(vae: AutoencoderKL, args: ToySDArgs) -> dict:
    """The judge adapted to the VAE's decoder (saved as classifier_toysd; skipped with --adapt_steps 0) and what it
    reads of the VAE's reconstructions."""
    info = {}
    if args.adapt_steps:
        from hifilight.toyworld import models as toy_models

        vae.requires_grad_(False)
        toy_models.save(adapt_classifier(vae, args.adapt_steps, args.seed), "classifier_toysd")
        vae.requires_grad_(True)
        info["classifier_toysd_accuracy_fresh_renders"] = toy_models.accuracy(load_classifier())
    info["vae_reconstruction_accuracy"] = reconstruction_accuracy(vae)
    return info
