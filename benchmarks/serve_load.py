"""Service load test and onnxruntime vs torch sampling time.

1. Starts the BentoML service (tiny preset, one HiFi subject) on a free loopback port and sends a bounded number
   of /generate requests with a fixed concurrency: requests/s, p50/p95 latency, errors (target 0), and the
   server's resident memory (all its processes) before and after; once one request at a time
   (HIFILIGHT_MAX_BATCH=1) and once batched (up to the concurrency), and their throughput ratio (target >= 1.3).
   Before the load, 10 requests one after another give the unloaded latency; `request_time_split` sets it beside
   the same request in this process (the bare `generate`, `SubjectServer.generate`, PNG encoding), so what HTTP and
   BentoML add, and what contention with the load generator on the same cores adds, are apart.
2. Time per image of the same generation with torch and with onnxruntime (from `hifilight export onnx`), on the
   tiny and the ~1/4-SD1.4 configs, and their max pixel difference.

    python -m benchmarks.serve_load [--requests 200 --concurrency 8] [--out benchmarks/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import interleaved_ms, write_report  # noqa: E402
from hifilight.artifacts import SubjectArtifact  # noqa: E402
from hifilight.conditioning import encode_text, null_tail  # noqa: E402
from hifilight.models import load_components  # noqa: E402
from hifilight.serving import start_service, stop_service, wait_ready  # noqa: E402


def _artifact(comps) -> SubjectArtifact:
    phi = encode_text(comps.tokenizer, comps.text_encoder, [""])
    tail = null_tail(phi, 5)
    return SubjectArtifact(c_s=tail.clone(), phi_s=tail, metadata={"base_model": comps.name, "class_name": "dog"})


def _rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def load_test(
    requests: int,
    concurrency: int,
    steps: int,
    size: int,
    max_batch: int = 8,
    sequential_requests: int = 10,
    threads: int = 2,
) -> dict:
    """Latency of `sequential_requests` requests one after another (nothing else in flight), then `requests` with
    `concurrency` in flight."""
    with tempfile.TemporaryDirectory() as tmp:
        subjects = Path(tmp) / "subjects"
        subjects.mkdir()
        _artifact(load_components("tiny")).save(subjects / "dog.safetensors")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = os.environ | {
            "BENTOML_HOME": str(Path(tmp) / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "HIFILIGHT_SUBJECTS_DIR": str(subjects),
            "HIFILIGHT_MODEL": "tiny",
            "HIFILIGHT_MAX_BATCH": str(max_batch),
            "HIFILIGHT_THREADS": str(threads),
        }
        url = f"http://127.0.0.1:{port}"
        with (Path(tmp) / "serve.log").open("w") as log:
            proc = start_service(port, env, log)
            try:
                wait_ready(url, proc)
                body = {"prompt": "a {} on the beach", "subject": "dog", "steps": steps, "width": size, "height": size}

                def call(i: int) -> tuple[float, bool]:
                    data = json.dumps(body | {"seed": i}).encode()
                    req = urllib.request.Request(
                        f"{url}/generate", data=data, headers={"content-type": "application/json"}
                    )
                    start = time.perf_counter()
                    try:
                        with urllib.request.urlopen(req, timeout=120) as r:
                            ok = r.status == 200 and r.read()[:4] == b"\x89PNG"
                    except OSError:
                        ok = False
                    return time.perf_counter() - start, ok

                call(0)  # warm-up
                sequential = [call(requests + i)[0] for i in range(sequential_requests)]
                rss_before = _rss_mb(proc.pid)
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    results = list(pool.map(call, range(requests)))
                wall = time.perf_counter() - start
                rss_after = _rss_mb(proc.pid)
            finally:
                stop_service(proc)
    latencies = sorted(t for t, _ in results)
    return {
        "max_batch": max_batch,
        "requests": requests,
        "concurrency": concurrency,
        "steps": steps,
        "size": size,
        "requests_per_second": round(requests / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
        "errors": sum(not ok for _, ok in results),
        "sequential_ms_min": round(1000 * min(sequential), 1),
        "sequential_ms_median": round(1000 * statistics.median(sequential), 1),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "rss_growth_bound_mb": 200,
    }


def in_process(steps: int, size: int, repeats: int) -> dict:
    """The same request in this process, without HTTP: the bare `generate` call, `SubjectServer.generate` (request
    checks, the lock, thread setting, PIL conversion) and the PNG encoding BentoML does for the response."""
    import io

    from hifilight.sampling.generate import generate, make_jobs
    from hifilight.serving import ServeSettings, SubjectServer

    with tempfile.TemporaryDirectory() as tmp:
        comps = load_components("tiny")
        _artifact(comps).save(Path(tmp) / "dog.safetensors")
        server = SubjectServer(
            ServeSettings(
                model="tiny", dino_model="tiny", subjects_dir=Path(tmp), max_batch=1, threads=torch.get_num_threads()
            )
        )
        server.load()
    item = server.subjects["dog"]
    jobs = make_jobs(["a {} on the beach"], item.subject.word, 0, 1)

    def bare():
        generate(item.comps, item.subject.artifact, jobs, steps, 7.5, size, progress=False)

    def method():
        server.generate("a {} on the beach", "dog", steps=steps, guidance_scale=7.5, width=size, height=size, seed=0)

    image = server.generate("a {} on the beach", "dog", steps=steps, guidance_scale=7.5, width=size, height=size)
    bare_ms, method_ms, png_ms = interleaved_ms([bare, method, lambda: image.save(io.BytesIO(), "PNG")], repeats, 1)
    return {
        "generate_ms_min": round(bare_ms["min"], 1),
        "server_method_ms_min": round(method_ms["min"], 1),
        "png_encode_ms_min": round(png_ms["min"], 2),
    }


def ort_vs_torch(preset: str, size: int, steps: int, repeats: int) -> dict:
    from hifilight.export.onnx import export_onnx
    from hifilight.export.ort import load_onnx_components
    from hifilight.sampling.generate import generate, make_jobs

    comps = load_components(preset)
    art = _artifact(comps)
    jobs = make_jobs(["a photo of a {}"], "dog", 0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(comps, Path(tmp) / "onnx", check=False)
        ort_comps = load_onnx_components(Path(tmp) / "onnx")
        times = {"torch": [], "onnxruntime": []}
        images = {}
        for _ in range(repeats):
            for name, c in (("torch", comps), ("onnxruntime", ort_comps)):
                start = time.perf_counter()
                images[name] = generate(c, art, jobs, steps, 7.5, size, progress=False)
                times[name].append(time.perf_counter() - start)
    t, o = min(times["torch"]), min(times["onnxruntime"])
    return {
        "preset": preset,
        "size": size,
        "steps": steps,
        "torch_s_per_image": round(t, 3),
        "onnxruntime_s_per_image": round(o, 3),
        "onnxruntime_speedup": round(t / o, 3),
        "max_abs_diff": float((images["torch"] - images["onnxruntime"]).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = (args.requests, args.concurrency, args.steps, args.size)
    locked = load_test(*load, max_batch=1, threads=args.threads)
    batched = load_test(*load, max_batch=args.concurrency, threads=args.threads)
    split = in_process(args.steps, args.size, args.repeats * 3)
    split["http_sequential_ms_min"] = locked["sequential_ms_min"]
    split["http_and_bentoml_ms"] = round(locked["sequential_ms_min"] - split["server_method_ms_min"], 1)
    split["ms_per_request_at_concurrency"] = round(1000 / locked["requests_per_second"], 1)
    results = {
        "request_time_split": split,
        "load_one_at_a_time": locked,
        "load_batched": batched,
        "batched_throughput_ratio": round(batched["requests_per_second"] / locked["requests_per_second"], 3),
        "batched_p95_ratio": round(batched["p95_ms"] / locked["p95_ms"], 3),
        "ort_vs_torch": [
            ort_vs_torch("tiny", 64, args.steps, args.repeats),
            ort_vs_torch("tiny-quarter", 256, args.steps, args.repeats),
        ],
    }
    write_report("serve_load", args.out, args.threads, results, target_errors=0, target_throughput_ratio=1.3)


if __name__ == "__main__":
    main()
