"""HiFi Tuner at the size people run, on one GPU: every stage of the pipeline next to a plain loop doing the same
UNet work on the same device in the same run (the ratio is the result), with peak memory.

The model is `sd14-shape` (Stable Diffusion v1.4's UNet, VAE and text encoder with random weights, built from
configs: nothing is downloaded, and speed does not depend on the weights) at 512 px, in bf16 (or fp16) autocast:
- `unet`: one UNet forward + backward into the conditioning (the unit of every stage) with SDPA attention (the
  default), the classic softmax attention, channels_last, `torch.compile` and `torch.compile(mode="reduce-overhead")`
  (CUDA graphs); compiled variants on CUDA only;
- `stage1`: a stage-1 step of `SubjectEmbeddingModule` (cached latents, mask, splice, Eq. 5 + Eq. 6, Adam) vs the
  bare UNet step;
- `stepwise`: Algorithm 1's stage (T x I steps) through Lightning's `Trainer.fit`, as `hifilight fit` runs it;
- `generate`: one 50-step CFG generation with `hifilight.sampling.generate` vs diffusers' `StableDiffusionPipeline`
  on the same components;
- `null_text`: null-text inversion (50 x K = 10, no early stop) vs a plain loop of the same UNet calls;
- `reference`: reference-guided generation (Algorithm 2: t_s 40, t_e 10, J = 10) vs a loop that recomputes both
  CFG branches at every inner step;
- `pipeline`: the whole per-subject HiFi pipeline at the paper's settings (1000 stage-1 steps, T x I step-wise steps,
  one guided generation), composed from the measured parts above.

    python -m benchmarks.gpu                 # on a GPU: ~5 min on one H200, writes benchmarks/results/gpu.json
    python -m benchmarks.gpu --quick --out /tmp/gpu.json   # the same code on the tiny preset (CPU, seconds)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from benchmarks.common import EXAMPLE, bench_trainer, first_batch, write_report  # noqa: E402
from hifilight.conditioning import encode_text  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.sampling import DDIMSchedule, SamplingEngine  # noqa: E402
from hifilight.sampling.generate import Job, generate, initial_latents  # noqa: E402
from hifilight.sampling.guidance import GuidanceSettings, ReferenceGuidance  # noqa: E402
from hifilight.sampling.inversion import ddim_invert  # noqa: E402
from hifilight.sampling.null_text import NullTextSettings, null_text_inversion  # noqa: E402
from hifilight.training.unet_options import configure_unet  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the paper's settings (full) or a seconds-long check of the same code (quick)."""

    preset: str
    resolution: int
    steps: int  # DDIM steps of generation and inversion
    stepwise: tuple[int, int]  # (T, I) of Algorithm 1
    inner: int  # K of null-text inversion and J of reference guidance
    guided: tuple[int, int]  # (t_s, t_e) of reference guidance
    stage1_steps: int  # of the whole pipeline (paper: 1000)
    repeats: int


FULL = Sizes("sd14-shape", 512, 50, (50, 10), 10, (40, 10), 1000, 10)
QUICK = Sizes("tiny", 64, 3, (2, 2), 2, (2, 1), 10, 2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Median and min wall time (ms) of `fn` after `warmup` calls, synchronised, and the peak GPU memory (MiB)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2), "peak_mib": peak}


def ratio(ours: dict, plain: dict) -> float:
    return round(ours["median_ms"] / plain["median_ms"], 3)


class Bench:
    """The components, inputs and autocast of one run."""

    def __init__(self, sizes: Sizes, device: torch.device, dtype: torch.dtype):
        self.sizes, self.device, self.dtype = sizes, device, dtype
        self.comps = load_components(sizes.preset, device=device)
        side = sizes.resolution // self.comps.vae_scale_factor
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(1, 4, side, side, generator=g).to(device)
        self.t = torch.tensor([500], device=device)
        self.cond = encode_text(self.comps.tokenizer, self.comps.text_encoder, ["a photo of a dog"]).float()
        self.phi = encode_text(self.comps.tokenizer, self.comps.text_encoder, [""]).float()

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def unet_step(self, unet):
        """One UNet forward + backward into the conditioning: what every training and guidance step costs."""
        context = self.phi.clone().requires_grad_(True)

        def step():
            with self.autocast():
                out = unet(self.x, self.t, encoder_hidden_states=context).sample
            out.float().pow(2).mean().backward()

        return step


def bench_unet(b: Bench) -> dict:
    unet, cuda, out = b.comps.unet, b.device.type == "cuda", {}
    out["sdpa"] = timed(b.unet_step(unet), b.device, b.sizes.repeats, warmup=2)
    configure_unet(unet, attention="classic")
    out["classic_attention"] = timed(b.unet_step(unet), b.device, b.sizes.repeats, warmup=2)
    configure_unet(unet, attention="sdpa")
    unet.to(memory_format=torch.channels_last)
    out["channels_last"] = timed(b.unet_step(unet), b.device, b.sizes.repeats, warmup=2)
    unet.to(memory_format=torch.contiguous_format)
    for name, mode in (("compile", "default"), ("compile_cudagraphs", "reduce-overhead")):
        if not cuda:
            out[name] = {"skipped": "CUDA only (compiling on a CPU run is not what this benchmark is for)"}
            continue
        start = time.perf_counter()
        step = b.unet_step(torch.compile(unet, mode=mode))
        step()
        sync(b.device)
        compile_s = round(time.perf_counter() - start, 1)
        out[name] = {**timed(step, b.device, b.sizes.repeats, warmup=2), "compile_s": compile_s}
        torch._dynamo.reset()
    for entry in out.values():
        if "median_ms" in entry:
            entry["vs_sdpa"] = ratio(entry, out["sdpa"])
    return out


def bench_stage1(b: Bench) -> dict:
    from hifilight.data import SubjectDataModule
    from hifilight.training import SubjectEmbeddingModule

    module = SubjectEmbeddingModule(pretrained=b.sizes.preset, stepwise_steps=0).to(b.device)
    batch = first_batch(SubjectDataModule(EXAMPLE, "dog", resolution=b.sizes.resolution, flip_p=0.0))
    batch = {k: v.to(b.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    optimizer = module.configure_optimizers()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with b.autocast():
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()

    ours, bare = (
        timed(step, b.device, b.sizes.repeats, 2),
        timed(b.unet_step(b.comps.unet), b.device, b.sizes.repeats, 2),
    )
    return {"step": ours, "bare_unet_fwd_bwd": bare, "ratio": ratio(ours, bare)}


def bench_stepwise(b: Bench, bare: dict) -> dict:

    from hifilight.data import SubjectDataModule
    from hifilight.training import SubjectEmbeddingModule

    T, I = b.sizes.stepwise  # noqa: E741
    module = SubjectEmbeddingModule(pretrained=b.sizes.preset, stage1_steps=0, stepwise_steps=I, stepwise_num_steps=T)
    precision = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}.get(b.dtype, "32-true")
    trainer = bench_trainer(T * I, accelerator=b.device.type, precision=precision)
    start = time.perf_counter()
    trainer.fit(module, SubjectDataModule(EXAMPLE, "dog", resolution=b.sizes.resolution))
    sync(b.device)
    wall_ms = 1000 * (time.perf_counter() - start)
    per_step = wall_ms / (T * I)
    return {
        "T": T,
        "I": I,
        "precision": precision,
        "wall_s": round(wall_ms / 1000, 2),
        "per_step_ms": round(per_step, 2),
        "vs_bare_unet_fwd_bwd": round(per_step / bare["median_ms"], 3),
        "note": "wall time of Trainer.fit (setup, latent encoding and the artifact's bookkeeping included)",
    }


def bench_generate(b: Bench) -> dict:
    from diffusers import StableDiffusionPipeline

    s = b.sizes
    jobs = [Job("a photo of a dog", "a photo of a dog", 0)]
    extras = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = StableDiffusionPipeline(
        **b.comps.modules(), tokenizer=b.comps.tokenizer, scheduler=b.comps.scheduler, **extras
    )
    pipe.set_progress_bar_config(disable=True)

    def ours():
        with b.autocast():
            generate(b.comps, None, jobs, s.steps, 7.5, s.resolution, 1, progress=False)

    def diffusers():
        with b.autocast():
            pipe("a photo of a dog", num_inference_steps=s.steps, guidance_scale=7.5, height=s.resolution,
                 width=s.resolution, output_type="pt", generator=torch.Generator().manual_seed(0))  # fmt: skip

    repeats = max(2, s.repeats // 3)
    mine, theirs = timed(ours, b.device, repeats), timed(diffusers, b.device, repeats)
    return {"steps": s.steps, "hifilight": mine, "diffusers_pipeline": theirs, "ratio": ratio(mine, theirs)}


def plain_null_text(engine: SamplingEngine, trajectory, cond, phi, inner: int) -> None:
    """The same UNet work as null-text inversion without early stop, written as a bare loop: per step one
    conditional forward, K unconditional forward + backward with Adam, one forward for x_{t-1}."""
    x, current = trajectory[-1], phi.clone()
    for i, t in enumerate(engine.schedule.timesteps.tolist()):
        with torch.no_grad():
            out_cond = engine.unet(x, t, encoder_hidden_states=cond).sample
        current = current.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([current], lr=1e-2)
        for _ in range(inner):
            out = engine.unet(x, t, encoder_hidden_states=current).sample
            guided = out + 7.5 * (out_cond - out)
            loss = torch.nn.functional.mse_loss(engine.transfer(x, guided, t), trajectory[-2 - i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            out = engine.unet(x, t, encoder_hidden_states=current).sample
            x = engine.transfer(x, out + 7.5 * (out_cond - out), t)


def bench_inversion_and_guidance(b: Bench) -> dict:
    from benchmarks.reference_guidance import NaiveGuidance

    s = b.sizes
    engine = SamplingEngine(b.comps.unet, DDIMSchedule.from_scheduler(b.comps.scheduler, s.steps))
    side = b.x.shape[-1]
    with torch.no_grad(), b.autocast():
        trajectory = [x.float() for x in ddim_invert(engine, b.x * 0.5, b.cond)]
    settings = NullTextSettings(inner_steps=s.inner, early_stop=False)
    repeats = max(1, s.repeats // 5)

    def ours_null():
        with b.autocast():
            null_text_inversion(engine, trajectory, b.cond, b.phi, 7.5, settings)

    def plain_null():
        with b.autocast():
            plain_null_text(engine, trajectory, b.cond, b.phi, s.inner)

    null = {"hifilight": timed(ours_null, b.device, repeats, 0), "plain_loop": timed(plain_null, b.device, repeats, 0)}
    null["ratio"] = ratio(null["hifilight"], null["plain_loop"])
    mask = torch.zeros(1, 1, side, side, device=b.device)
    mask[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
    guide = GuidanceSettings(start=s.guided[0], end=s.guided[1], inner_steps=s.inner)
    x_T = initial_latents(0, tuple(b.x.shape), b.device)

    def guided(cls):
        def run():
            with b.autocast():
                engine.sample(x_T, b.cond, b.phi, 7.5, callbacks=[cls(trajectory, mask, guide)])

        return run

    def plain_sample():
        with torch.no_grad(), b.autocast():
            engine.sample(x_T, b.cond, b.phi, 7.5)

    ref = {"hifilight": timed(guided(ReferenceGuidance), b.device, repeats, 0),
           "both_branches_every_inner_step": timed(guided(NaiveGuidance), b.device, repeats, 0),
           "unguided_sampling": timed(plain_sample, b.device, repeats, 0)}  # fmt: skip
    ref["ratio_vs_both_branches"] = ratio(ref["hifilight"], ref["both_branches_every_inner_step"])
    ref["t_s"], ref["t_e"], ref["J"], ref["steps"] = *s.guided, s.inner, s.steps
    null["K"], null["steps"] = s.inner, s.steps
    return {"null_text": null, "reference": ref}


def pipeline_estimate(sizes: Sizes, results: dict) -> dict:
    """The whole per-subject pipeline at the paper's settings from the measured parts (one guided image)."""
    stage1 = sizes.stage1_steps * results["stage1"]["step"]["median_ms"] / 1000
    stepwise = results["stepwise"]["wall_s"]
    guided = results["guidance"]["reference"]["hifilight"]["median_ms"] / 1000
    return {"stage1_s": round(stage1, 1), "stepwise_s": stepwise, "guided_generation_s": round(guided, 1),
            "total_s": round(stage1 + stepwise + guided, 1), "stage1_steps": sizes.stage1_steps,
            "note": "composed from the measured parts of this run, not one timed end-to-end run"}  # fmt: skip


def run(sizes: Sizes, device: torch.device, dtype: torch.dtype, parts: list[str]) -> dict:
    torch.manual_seed(0)
    b = Bench(sizes, device, dtype)
    results: dict = {}
    for part in parts:
        start = time.perf_counter()
        if part == "stepwise":
            bare = timed(b.unet_step(b.comps.unet), device, sizes.repeats, 2)
            results[part] = bench_stepwise(b, bare)
        else:
            results[part] = BENCHES[part](b)
        print(f"gpu benchmark: {part} done in {time.perf_counter() - start:.1f} s", flush=True)
    if {"stage1", "stepwise", "guidance"} <= results.keys():
        results["pipeline"] = pipeline_estimate(sizes, results)
    return results


BENCHES = {
    "unet": bench_unet,
    "stage1": bench_stage1,
    "generate": bench_generate,
    "guidance": bench_inversion_and_guidance,
}
PARTS = ["unet", "stage1", "stepwise", "generate", "guidance"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny preset at 64 px: seconds on a CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="autocast precision (default: bf16 on CUDA)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    results = run(sizes, device, dtype, args.parts)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return write_report("gpu", args.out, torch.get_num_threads(), results, sizes=sizes.__dict__, device=str(device),
                        gpu=gpu, dtype=args.dtype, wall_s=round(time.perf_counter() - start, 1))  # fmt: skip


if __name__ == "__main__":
    main()
