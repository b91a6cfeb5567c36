"""The service's settings: one field per environment variable (HIFILIGHT_<NAME>)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DINO_DEFAULT = "facebook/dino-vits16"
DINO_FOR = {"tiny": "tiny", "toysd": "toyworld"}  # the image encoder reference guidance uses with a built-in model


@dataclass(frozen=True)
class ServeSettings:
    """Service configuration; each field has an environment variable (HIFILIGHT_<NAME>)."""

    model: str = "toysd"  # base model: preset, hub id or local folder (ToySD serves the embedded ToyWorld subjects)
    subjects_dir: Path = Path("serve/subjects")
    backend: str = "torch"  # "torch" or "onnx"
    onnx_dir: Path | None = None  # `hifilight export onnx` folder for backend onnx
    device: str = "auto"
    max_size: int = 768  # largest width/height in pixels
    max_prompt_chars: int = 300
    # the image encoder of reference guidance; None: the one that goes with `model` (DINO_FOR: "tiny" with the tiny
    # preset, "toyworld" with ToySD), else DINO ViT-S/16
    dino_model: str | None = None
    threads: int = 0  # torch CPU threads; 0 = all cores (BentoML workers may otherwise inherit a lower limit)
    # the most work one request may ask for, in megapixel-steps (width x height x steps / 1e6; with reference
    # guidance every inner step J of every guided step counts as one more step): 50 steps at 512 x 512 is 13.1. A
    # request beyond it gets a 413, so no client can hold the model for long (768 px x 100 steps took ~30 minutes on
    # 2 CPU cores; one 64 px guided request of 10 steps with J = 10 took 85 s).
    max_work: float = 14.0
    max_inner_steps: int = 20  # the largest J a request may ask for (paper: 10)
    # unguided requests of the same subject, steps, guidance and size are denoised together: up to max_batch, the
    # first waiting at most max_wait_ms for others; max_queue requests may wait (more get a 503). 1 = one at a time.
    max_batch: int = 8
    max_wait_ms: float = 20.0
    max_queue: int = 64
    max_body: int = 1_000_000  # bytes of a request body (requests are small JSON)
    api_token: str | None = None  # when set, every request but the probes needs "Authorization: Bearer <token>"
    fit_configs: Path = Path("configs")  # the presets a fit request may name (fit YAMLs, by file stem)

    def __post_init__(self):
        if self.dino_model is None:
            object.__setattr__(self, "dino_model", DINO_FOR.get(self.model, DINO_DEFAULT))

    @classmethod
    def from_env(cls, env=os.environ) -> ServeSettings:
        get = lambda name, default: env.get(f"HIFILIGHT_{name.upper()}", default)  # noqa: E731
        onnx = get("onnx_dir", None)
        model = get("model", cls.model)
        return cls(
            model=model,
            subjects_dir=Path(get("subjects_dir", cls.subjects_dir)),
            backend=get("backend", cls.backend),
            onnx_dir=Path(onnx) if onnx else None,
            device=get("device", cls.device),
            max_size=int(get("max_size", cls.max_size)),
            max_prompt_chars=int(get("max_prompt_chars", cls.max_prompt_chars)),
            dino_model=get("dino_model", None),
            threads=int(get("threads", 0)),
            max_work=float(get("max_work", cls.max_work)),
            max_inner_steps=int(get("max_inner_steps", cls.max_inner_steps)),
            max_batch=int(get("max_batch", cls.max_batch)),
            max_wait_ms=float(get("max_wait_ms", cls.max_wait_ms)),
            max_queue=int(get("max_queue", cls.max_queue)),
            max_body=int(get("max_body", cls.max_body)),
            api_token=get("api_token", None),
            fit_configs=Path(get("fit_configs", cls.fit_configs)),
        )
