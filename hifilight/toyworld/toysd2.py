"""ToySD v2: the generator retrained so that a personalization method can steer it (the ToySD v2 issue).

What changes from ToySD (`toysd.py`), each a lever the v1 evidence pointed at:
- **a frozen, pretrained text encoder**, as Stable Diffusion has: ToyCLIP's text tower (`toyclip.py`), trained
  contrastively on renders and captions first, then frozen; the UNet alone learns to draw from it;
- **EMA weights** (diffusers' `EMAModel` with warm-up); the saved and sampled UNet is the EMA one;
- **larger objects** (`scenes.SIZES["v2"]`: most fill 45-70% of the frame width, 7-11 latent cells), with the judge,
  ToyDINO and ToySAM fine-tuned from the v1 weights to read them;
- **capacity where objects are decided**: UNet widths (64, 128, 192) (v1: 48, 96, 128), cross-attention at 8x8 and
  4x4 over 128-wide text states;
- **training across sessions**: a full checkpoint (UNet, EMA, AdamW state, data position, step; safetensors + JSON)
  every `checkpoint_minutes`, `--resume true` continues from it; `--compact_to` writes the compact resume point a
  session commits (half-precision UNet and EMA, no optimizer state: a resume re-creates AdamW with a short warm-up).

The VAE is v1's (convolutional; larger objects only make its job easier), re-scaled to the new corpus.
Everything is written under `--out` (ToySD in `out/toysd`, ToyCLIP in `out/toyclip`, the readers beside them) and
read from there by `hifilight.toyworld.world.use("v2", out)`; the committed v1 assets are not touched.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from hifilight.errors import HifiError
from hifilight.io import write_folder_atomic
from hifilight.models.tiny import sd14_ddim_scheduler
from hifilight.toyworld import models as readers
from hifilight.toyworld import toyclip, toysd, world
from hifilight.toyworld.corpus import caption_variant, encode_latents, render_corpus
from hifilight.toyworld.tokenizer import tokenize, toy_tokenizer
from hifilight.toyworld.toysd_training import curve_point
from hifilight.toyworld.unet_trainer import Trainer
from hifilight.toyworld.vae_training import adapt_classifier, reconstruction_accuracy

CHECKPOINT = "checkpoint"
READERS = ("classifier", "classifier_toysd", "segmenter")
READERS_RECORD = "readers.json"  # their accuracy on fresh v2 renders


@dataclass
class TrainArgs:
    """Options of `hifilight toyworld train toysd2`."""

    out: Path = Path("outputs/toysd_v2")
    """Folder for everything the run makes: toysd/, toyclip/, the readers, checkpoint/."""
    resume: bool = False
    """Continue from out/checkpoint (a full or a compact resume point copied there)."""
    compact_to: Path | None = None
    """Only write the compact resume point of out/ (no optimizer state, half precision) to this folder, then stop."""
    compact_weights: str = "both"
    """What the compact point keeps: "both" (the raw weights and the EMA) or "ema" (half the size; a resume restarts
    the raw weights from the EMA, a choice of ours for the ~100 MB the resume points may add to the history)."""
    images: int = 40000
    """Renders in the training corpus (the same for ToyCLIP and the UNet)."""
    clip_steps: int = 1200
    """ToyCLIP's contrastive training steps."""
    clip_batch: int = 128
    clip_lr: float = 5e-4
    reader_steps: int = 300
    """Steps fine-tuning the v1 classifier and segmenter on v2's object sizes (the judge then adapts to the VAE)."""
    unet_steps: int = 30000
    """Total UNet steps of the run (a resume continues towards it)."""
    batch: int = 32
    lr: float = 4e-4
    """AdamW learning rate, constant after the warm-up (the run's length is open across sessions)."""
    warmup: int = 300
    """Linear warm-up steps, at the start and after every resume that re-creates the optimizer."""
    ema_power: float = 0.75
    """EMA warm-up power (diffusers' EMAModel): decay 1 - (1 + step)^-power, capped at ema_max_decay."""
    ema_max_decay: float = 0.9995
    snr_gamma: float = 5.0
    """Min-SNR loss weighting (0: the plain epsilon loss)."""
    latent_scale: float = 0.3
    """Latent std the UNet sees (v1's input scaling, see corpus.encode_latents)."""
    partial_captions: float = 0.2
    """Share of partial captions (corpus.caption_variant)."""
    checkpoint_minutes: float = 10.0
    """Minutes between full checkpoints."""
    curve_every: int = 1500
    """UNet steps between learning-curve points (validation oracle and floor with the EMA UNet; 0: none)."""
    curve_images: int = 1
    """Images per prompt at each learning-curve point."""
    stop_after_minutes: float = 0.0
    """Checkpoint and stop after this many minutes of this process (0: run to unet_steps)."""
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    """cpu, cuda or auto."""
    bf16: bool = False
    """bf16 autocast for the UNet's forward pass (CUDA)."""

    def check(self) -> None:
        for name in ("images", "clip_steps", "clip_batch", "unet_steps", "batch"):
            if getattr(self, name) < 1:
                raise HifiError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.compact_weights not in ("both", "ema"):
            raise HifiError(f"--compact_weights must be both or ema, got {self.compact_weights!r}")
        if not 0 < self.ema_max_decay < 1:
            raise HifiError(f"--ema_max_decay must be in (0, 1), got {self.ema_max_decay}")
        if self.latent_scale <= 0 or self.snr_gamma < 0 or not 0 <= self.partial_captions <= 0.6:
            raise HifiError("--latent_scale must be > 0, --snr_gamma >= 0 and --partial_captions in [0, 0.6]")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise HifiError(f"--device {self.device}: no CUDA device here; pass --device cpu (or auto)")


def resolve_device(device: str) -> str:
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def toy_unet() -> UNet2DConditionModel:
    """ToySD v2's UNet: widths (64, 128, 192) at 16x16, 8x8, 4x4 latents; cross-attention to ToyCLIP's 128-wide text
    states at 8x8 and 4x4 (self-attention over the 256 tokens of 16x16 cost 1.6x a step on a CPU; SD has it)."""
    return toysd.toy_unet((64, 128, 192), toyclip.TEXT_HIDDEN)


def train_readers(args: TrainArgs, vae: AutoencoderKL, log=print) -> dict:
    """The v1 classifier (ToyDINO) and segmenter (ToySAM) fine-tuned on v2's sizes, then the judge adapted to the
    VAE as v1's was; skipped when they are already in `out`. Returns their accuracy on fresh renders, kept in
    out/readers.json so a resumed run's record still has it."""
    out = Path(args.out)
    if not all((out / f"{n}.safetensors").is_file() for n in READERS):
        with world.using("v1"):
            start = {n: readers.load(n) for n in ("classifier", "segmenter")}
        for kind in ("classifier", "segmenter"):
            readers.save(readers.train(kind, args.reader_steps, args.seed, lr=3e-4, model=start[kind]), kind)
        vae.requires_grad_(False)
        readers.save(adapt_classifier(vae, args.reader_steps, args.seed, log=log), "classifier_toysd")
        scores = {
            "classifier_accuracy_fresh_renders": readers.accuracy(readers.load("classifier")),
            "classifier_toysd_accuracy_fresh_renders": readers.accuracy(readers.load("classifier_toysd")),
            "toysam_mean_iou": readers.mean_iou(readers.load("segmenter")),
        }
        (out / READERS_RECORD).write_text(json.dumps(scores, indent=1) + "\n")
    return json.loads((out / READERS_RECORD).read_text()) if (out / READERS_RECORD).is_file() else {}


def caption(scene, rng, partial: float = 0.2) -> str:
    """ToyCLIP's captions: ToySD's mix without the empty caption."""
    return caption_variant(scene, rng, drop=0.0, partial=partial)


def train_clip(args: TrainArgs, tokenizer, images: torch.Tensor, scenes: list, log=print) -> dict:
    """ToyCLIP trained on the corpus (skipped when out/toyclip exists); its retrieval accuracy on fresh renders."""
    folder = Path(args.out) / "toyclip"
    if not (folder / "config.json").is_file():
        model = toyclip.build(tokenizer, args.seed)
        toyclip.train(
            model,
            lambda c: tokenize(tokenizer, c),
            images,
            scenes,
            lambda s, r: caption(s, r, args.partial_captions),
            args.clip_steps,
            args.clip_batch,
            args.clip_lr,
            args.seed,
            log,
            resolve_device(args.device),
        )
        toyclip.save(model, tokenizer, folder)
    model, _ = toyclip.load(folder)
    fresh, fresh_scenes, _ = render_corpus(256, args.seed + 99)
    return {
        "toyclip_retrieval_full_captions": round(
            toyclip.retrieval_accuracy(
                model, lambda c: tokenize(tokenizer, c), fresh, [s.caption for s in fresh_scenes]
            ),
            3,
        )
    }


def build_components(args: TrainArgs, log=print) -> tuple[dict, dict, torch.Tensor, list]:
    """Tokenizer, VAE (v1's), ToyCLIP's frozen text tower, a seeded UNet, the scheduler; the corpus and its latents."""
    out = Path(args.out)
    tokenizer = toy_tokenizer()
    vae = AutoencoderKL.from_pretrained(world.ASSETS / "toysd", subfolder="vae").eval()
    info = train_readers(args, vae, log)
    images, scenes, _ = render_corpus(args.images, args.seed + 1)
    info |= train_clip(args, tokenizer, images, scenes, log)
    clip, _ = toyclip.load(out / "toyclip")
    torch.manual_seed(args.seed)
    comps = {
        "unet": toy_unet(),
        "vae": vae,
        "text_encoder": toyclip.text_encoder(clip),
        "tokenizer": tokenizer,
        "scheduler": sd14_ddim_scheduler(),
    }
    vae.requires_grad_(False)
    info["vae_reconstruction_accuracy"] = reconstruction_accuracy(vae)
    latents = encode_latents(vae, images, args.latent_scale)
    return comps, info, latents, scenes


def compact(args: TrainArgs) -> Path:
    """Write the compact resume point of `args.out` to `args.compact_to`: the readers, ToyCLIP, and the checkpoint in
    half precision without optimizer state (copy it back into an --out folder and pass --resume true)."""
    src, dest = Path(args.out), Path(args.compact_to)
    if not (src / CHECKPOINT / "state.json").is_file():
        raise HifiError(f"--out {src}: no {CHECKPOINT}/state.json to compact; run the training first")

    def write(tmp: Path) -> None:
        for name in [f"{n}.safetensors" for n in READERS] + [READERS_RECORD] * (src / READERS_RECORD).is_file():
            shutil.copy(src / name, tmp / name)
        shutil.copytree(src / "toyclip", tmp / "toyclip")
        (tmp / CHECKPOINT).mkdir()
        state = json.loads((src / CHECKPOINT / "state.json").read_text())
        for part in ("unet", "ema") if args.compact_weights == "both" else ("ema",):
            tensors = load_file(str(src / CHECKPOINT / f"{part}.safetensors"))
            save_file({k: v.half() for k, v in tensors.items()}, str(tmp / CHECKPOINT / f"{part}.safetensors"))
        state |= {"compact": True, "compact_weights": args.compact_weights, "optimizer_steps": {}}
        (tmp / CHECKPOINT / "state.json").write_text(json.dumps(state, indent=1) + "\n")
        if (dest / "README.md").is_file():  # the folder's own note (a committed resume point has one) stays
            shutil.copy(dest / "README.md", tmp / "README.md")

    return write_folder_atomic(dest, write, overwrite=True)


def train(args: TrainArgs, log=print) -> Path:
    """Train (or continue) ToySD v2 under `args.out`; returns the ToySD folder (out/toysd, EMA weights)."""
    args.check()
    if args.compact_to is not None:
        return compact(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.resume:
        raise HifiError(f"--out {out} already has a {CHECKPOINT}/; pass --resume true to continue it or a new --out")
    with world.using("v2", out):  # v2's sizes and this run's readers for the run, the process's world after it
        return run(args, log)


def run(args: TrainArgs, log=print) -> Path:
    """The run itself, inside world v2 with `args.out`'s models: components, then UNet steps until --unet_steps
    or --stop_after_minutes, with checkpoints and learning-curve points on the way."""
    out = Path(args.out)
    started = time.perf_counter()
    comps, info, latents, scenes = build_components(args, log)
    device = resolve_device(args.device)
    trainer = Trainer(args, comps, latents, scenes, device)
    if args.resume and (out / CHECKPOINT / "state.json").is_file():
        trainer.load_checkpoint(out / CHECKPOINT)
        saved = json.loads((out / CHECKPOINT / "state.json").read_text())["scaling_factor"]
        latents.mul_(saved / comps["vae"].config.scaling_factor)  # the run's latent scale, not a re-encoding's
        comps["vae"].register_to_config(scaling_factor=saved)
        log(f"resumed at step {trainer.step} from {out / CHECKPOINT}")
    info |= {"world": "v2", "device": device, "threads": args.threads}
    base, last_ckpt = trainer.seconds, time.perf_counter()
    while trainer.step < args.unet_steps:
        loss = trainer.train_step()
        trainer.seconds = base + time.perf_counter() - started
        if trainer.step % 100 == 0:
            log(f"unet step {trainer.step}: loss {loss:.4f} ({trainer.seconds / 60:.0f} min)")
        if args.curve_every and trainer.step % args.curve_every == 0:
            trainer.export(out / "toysd", info)
            point = curve_point(out / "toysd", trainer.step, args.curve_images)
            trainer.curve.append(point | {"minutes": round(trainer.seconds / 60)})
            log(f"learning curve: {json.dumps(trainer.curve[-1])}")
        stop = args.stop_after_minutes and time.perf_counter() - started > 60 * args.stop_after_minutes
        if stop or time.perf_counter() - last_ckpt > 60 * args.checkpoint_minutes:
            trainer.save_checkpoint(out / CHECKPOINT)
            trainer.export(out / "toysd", info)
            last_ckpt = time.perf_counter()
            log(f"checkpoint at step {trainer.step}")
        if stop:
            break
    trainer.save_checkpoint(out / CHECKPOINT)
    trainer.export(out / "toysd", info)
    log(f"ToySD v2 at step {trainer.step} -> {out / 'toysd'}")
    return out / "toysd"
