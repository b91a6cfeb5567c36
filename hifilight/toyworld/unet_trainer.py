"""ToySD v2's UNet training state (`Trainer`): the UNet, its EMA (diffusers' `EMAModel`), AdamW and the data
position, one training step (epsilon loss with Min-SNR weighting on a frozen text encoder's states), and a checkpoint
of all of it in safetensors + JSON: full (fp32, optimizer moments: a resume is the run that did not stop) or compact
(fp16 weights and EMA, no optimizer state: a resume re-creates AdamW with a warm-up)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from hifilight.io import write_folder_atomic
from hifilight.toyworld.corpus import caption_variant
from hifilight.toyworld.tokenizer import tokenize
from hifilight.toyworld.toysd import save
from hifilight.toyworld.toysd_training import min_snr_weights
from hifilight.training.optim import adamw

if TYPE_CHECKING:
    from hifilight.toyworld.toysd2 import TrainArgs


class Trainer:
    """The UNet's training state: model, EMA, optimizer, data position; saved and restored as one checkpoint."""

    def __init__(self, args: TrainArgs, comps: dict, latents: torch.Tensor, scenes: list, device: str):
        self.args, self.comps, self.latents, self.scenes, self.device = args, comps, latents, scenes, device
        self.unet = comps["unet"].to(device)
        self.text_encoder = comps["text_encoder"].to(device).requires_grad_(False)
        self.noise_sched = DDPMScheduler.from_config(comps["scheduler"].config)
        self.ema = EMAModel(self.unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, power=args.ema_power)
        self.opt = adamw(self.unet.parameters(), args.lr, 1e-2)
        self.rng = np.random.default_rng(args.seed)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.step, self.warm_from, self.curve, self.seconds = 0, 0, [], 0.0

    def train_step(self) -> float:
        a = self.args
        for group in self.opt.param_groups:
            group["lr"] = a.lr * min(1.0, (self.step - self.warm_from + 1) / max(1, a.warmup))
        idx = self.rng.integers(len(self.latents), size=a.batch)
        x0 = self.latents[idx]
        captions = [caption_variant(self.scenes[i], self.rng, partial=a.partial_captions) for i in idx]
        ids = tokenize(self.comps["tokenizer"], captions)
        noise = torch.randn(x0.shape, generator=self.gen)
        t = torch.randint(0, self.noise_sched.config.num_train_timesteps, (a.batch,), generator=self.gen)
        x_t = self.noise_sched.add_noise(x0, noise, t)
        with torch.no_grad():
            states = self.text_encoder(ids.to(self.device))[0]
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=a.bf16):
            pred = self.unet(x_t.to(self.device), t.to(self.device), states).sample
        loss = F.mse_loss(pred.float(), noise.to(self.device), reduction="none").mean(dim=(1, 2, 3))
        if a.snr_gamma > 0:
            loss = loss * min_snr_weights(self.noise_sched, t, a.snr_gamma).to(self.device)
        loss = loss.mean()
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.opt.step()
        self.ema.step(self.unet.parameters())
        self.step += 1
        return loss.item()

    def names(self) -> list[str]:
        return [n for n, _ in self.unet.named_parameters()]

    def save_checkpoint(self, folder: Path, compact: bool = False) -> None:
        """Full: fp32 UNet, EMA and AdamW moments; compact: fp16 UNet and EMA only. Atomic."""
        dtype = torch.float16 if compact else torch.float32
        names = self.names()

        def write(tmp: Path) -> None:
            params = dict(self.unet.named_parameters())
            tensors = {"unet": [params[n] for n in names], "ema": self.ema.shadow_params}
            for part, values in tensors.items():
                flat = {n: v.detach().to("cpu", dtype).contiguous() for n, v in zip(names, values, strict=True)}
                save_file(flat, str(tmp / f"{part}.safetensors"))
            opt_steps = {}
            if not compact:
                moments, plist = {}, list(self.unet.parameters())
                for n, p in zip(names, plist, strict=True):
                    st = self.opt.state.get(p)
                    if st:
                        moments[f"exp_avg.{n}"] = st["exp_avg"].detach().cpu().contiguous()
                        moments[f"exp_avg_sq.{n}"] = st["exp_avg_sq"].detach().cpu().contiguous()
                        opt_steps[n] = float(st["step"])
                save_file(moments, str(tmp / "optimizer.safetensors"))
            state = {
                "step": self.step,
                "warm_from": self.warm_from,
                "ema_optimization_step": self.ema.optimization_step,
                "optimizer_steps": opt_steps,
                "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": self.gen.get_state().tolist(),
                "curve": self.curve,
                "seconds": round(self.seconds),
                "scaling_factor": self.comps["vae"].config.scaling_factor,
                "compact": compact,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.args).items()},
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")

        write_folder_atomic(folder, write, overwrite=True)

    def load_checkpoint(self, folder: Path) -> None:
        """Restore a checkpoint; without optimizer state (a compact point) AdamW starts fresh with a new warm-up."""
        state = json.loads((folder / "state.json").read_text())
        names = self.names()
        ema = load_file(str(folder / "ema.safetensors"))
        # a compact point written with --compact_weights ema holds no raw weights: they restart from the EMA
        raw = folder / "unet.safetensors"
        weights = load_file(str(raw)) if raw.is_file() else ema
        self.unet.load_state_dict({**self.unet.state_dict(), **{n: weights[n].float() for n in names}})
        self.ema.shadow_params = [ema[n].float().to(self.device) for n in names]
        self.ema.optimization_step = state["ema_optimization_step"]
        self.step, self.curve, self.seconds = state["step"], state["curve"], float(state["seconds"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.gen.set_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self.warm_from = state["warm_from"]
        opt_file = folder / "optimizer.safetensors"
        if opt_file.is_file() and state["optimizer_steps"]:
            moments = load_file(str(opt_file))
            for n, p in zip(names, self.unet.parameters(), strict=True):
                if n in state["optimizer_steps"]:
                    self.opt.state[p] = {
                        # on the parameter's device, in float32: what the fused kernel (CUDA too) expects
                        "step": torch.tensor(state["optimizer_steps"][n], dtype=torch.float32, device=p.device),
                        "exp_avg": moments[f"exp_avg.{n}"].to(self.device),
                        "exp_avg_sq": moments[f"exp_avg_sq.{n}"].to(self.device),
                    }
        else:
            self.warm_from = self.step

    def export(self, folder: Path, info: dict) -> None:
        """The diffusers pipeline folder with the EMA UNet (what is sampled), the training record inside."""
        self.ema.store(self.unet.parameters())
        self.ema.copy_to(self.unet.parameters())
        self.unet.cpu()
        try:
            comps = {**self.comps, "unet": self.unet}
            save(comps, folder, info | {"unet_steps_done": self.step, "learning_curve": self.curve})
        finally:
            self.unet.to(self.device)
            self.ema.restore(self.unet.parameters())
