"""The model side of the BentoML service (`serve/service.py`): settings from the environment, the loaded subjects,
request validation and generation. Kept free of BentoML so it can be tested and reused directly.

Subjects are the `*.safetensors` files of a folder (HiFi subject artifacts and Textual Inversion embeddings); a
file that is corrupt or belongs to another base model is skipped with a logged reason and the rest still serve.
Requests name subjects by their file stem only; no path from a request ever reaches the file system. Photos for
reference-guided generation go in `<subjects>/<name>/` (optional).

Concurrency: one generation runs on the model at a time (a lock around it); BentoML queues the other requests.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import json
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hifilight.batcher import KeyedBatcher, QueueFull
from hifilight.data.images import to_pil
from hifilight.errors import HifiError, shown
from hifilight.prompts import render
from hifilight.sampling.engine import StepCallback
from hifilight.sampling.generate import Job, generate, make_jobs
from hifilight.subjects import Subject, load_subject

log = logging.getLogger("hifilight.serve")


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
    dino_model: str = (
        "facebook/dino-vits16"  # for reference guidance ("tiny" with the tiny preset, "toyworld" with ToySD)
    )
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
            dino_model=get("dino_model", DINO_FOR.get(model, cls.dino_model)),
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


# The request bounds that do not depend on settings, one place for the HTTP layer (serve/service.py) and validate.
MAX_STEPS = 100
MAX_GUIDANCE = 30.0
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class GuideRequest:
    """Reference guidance as a request asks for it: t_s and t_e (DDIM steps, T = first; None: the paper's 40 and 10
    of 50, scaled to the request's steps) and J, Adam steps per guided step (paper: 10)."""

    start: int | None = None
    end: int | None = None
    inner_steps: int = 10

    def settings(self, steps: int, max_inner_steps: int):
        """GuidanceSettings for `steps` DDIM steps; RequestError naming the field when out of bounds."""
        from hifilight.sampling.guidance import GuidanceSettings

        start = self.start if self.start is not None else max(1, round(steps * 0.8))
        end = self.end if self.end is not None else max(1, round(steps * 0.2))
        if not 1 <= end <= start <= steps:
            raise RequestError(
                f"guide_start {start} / guide_end {end}: need 1 <= guide_end <= guide_start <= steps ({steps})"
            )
        if not 0 <= self.inner_steps <= max_inner_steps:
            raise RequestError(f"guide_inner_steps must be in 0..{max_inner_steps}, got {self.inner_steps}")
        return GuidanceSettings(start=start, end=end, inner_steps=self.inner_steps)


class RequestError(ValueError):
    """A bad request: `status` is 400 (invalid value), 404 (unknown subject) or 413 (more work than allowed)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Cancelled(RequestError):
    """The client went away; nothing is sent back (499: client closed the request)."""

    def __init__(self):
        super().__init__("the client closed the request; generation stopped", status=499)


class StopWhenSet(StepCallback):
    """An engine callback that ends sampling at the next step once `event` is set (every one of `events`: a batch
    stops when all its clients have gone)."""

    def __init__(self, event: threading.Event | None = None, events: list[threading.Event] | None = None):
        self.events = [event] if event is not None else list(events or [])

    def check(self) -> None:
        if self.events and all(e.is_set() for e in self.events):
            raise Cancelled()

    def on_step_begin(self, state, engine) -> None:
        self.check()


def skip_reason(path: Path) -> str | None:
    """Why an entry of the subjects folder is not a subject: "" to pass it by in silence (hidden entries, a subject's
    photos folder), a reason to report, or None for a `.safetensors` file to load."""
    if path.name.startswith("."):
        return ""
    if path.is_dir():
        if (path / "model_index.json").is_file() or (path / "unet").is_dir():
            return "DreamBooth folders are served by pointing HIFILIGHT_MODEL at them"
        if path.suffix == ".safetensors":
            return "a folder, not a subject file; subjects are the .safetensors files `hifilight fit` writes"
        if Path(f"{path}.safetensors").is_file():
            return ""
        return f"a photos folder with no {path.name}.safetensors beside it (photos belong next to their subject)"
    if path.suffix != ".safetensors":
        return "only .safetensors subjects are read"
    return None


def service_words(reason: str, path: Path) -> str:
    """A loader's message in the service's words: the settings are environment variables, not CLI flags."""
    reason = reason.replace(f"--subject {path}: ", "").replace(f"--subject {path}", "this subject")
    return re.sub(r"pass --model\.pretrained (\S+)", r"serve it with HIFILIGHT_MODEL=\1", reason)


@dataclass
class Loaded:
    subject: Subject
    comps: object  # SDComponents to generate with (a copy with its tokens for Textual Inversion)
    photos: Path | None
    adapter: str | None = None  # a LoRA subject's adapter on the shared UNet


@dataclass
class SubjectServer:
    settings: ServeSettings
    subjects: dict[str, Loaded] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _dino: object = None
    _guides: dict = field(default_factory=dict)
    _adapters: list[str] = field(default_factory=list)
    batcher: KeyedBatcher | None = None

    def load(self) -> SubjectServer:
        from hifilight.models import load_components
        from hifilight.options import resolve_device

        s = self.settings
        self.threads = s.threads or os.cpu_count() or 1
        if s.backend == "onnx":
            if s.onnx_dir is None:
                raise HifiError("HIFILIGHT_BACKEND=onnx needs HIFILIGHT_ONNX_DIR (a `hifilight export onnx` folder)")
            from hifilight.export.ort import load_onnx_components

            self.comps = load_onnx_components(s.onnx_dir)
        elif s.backend == "torch":
            self.comps = load_components(s.model, "float32", resolve_device(s.device))
        else:
            raise HifiError(f"HIFILIGHT_BACKEND={s.backend}: use torch or onnx")
        folder = Path(s.subjects_dir)
        if not folder.is_dir():
            log.warning("HIFILIGHT_SUBJECTS_DIR=%s: no such folder; serving no subjects", folder)
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            why = skip_reason(path)
            if why == "":
                continue  # a hidden file, or a subject's photos (<name>/ beside <name>.safetensors)
            if why:
                self._skip(path.stem if path.suffix == ".safetensors" else path.name, why)
                continue
            try:
                self.subjects[path.stem] = self._load_one(path)
            except Exception as err:  # noqa: BLE001 - one bad file must never stop the others from serving
                reason = str(err) if isinstance(err, HifiError) else f"unreadable subject ({type(err).__name__}: {err})"
                self._skip(path.stem, service_words(reason, path))
        log.info("serving %d subjects from %s (%d skipped)", len(self.subjects), folder, len(self.skipped))
        return self

    def _skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        log.warning("skipping subject %s: %s", name, reason)

    def add(self, path: Path) -> None:
        """Serve one more subject file (a fit task's result) from now on; raises when it cannot be served."""
        with self.lock:
            loaded = self._load_one(path)
        self.subjects[path.stem] = loaded
        self.skipped.pop(path.stem, None)

    def _load_one(self, path: Path) -> Loaded:
        from hifilight.sampling.generate import prepare_subject

        subject = load_subject(path)
        comps = self.comps
        if subject.artifact is not None:
            prepare_subject(comps, subject.artifact)  # refuses another base model's artifact
        elif subject.embedding is not None:
            if self.settings.backend != "torch":
                raise HifiError("Textual Inversion subjects need the torch backend (the ONNX text encoder is fixed)")
            comps = copy.copy(comps)
            comps.tokenizer, comps.text_encoder = copy.deepcopy(comps.tokenizer), copy.deepcopy(comps.text_encoder)
            subject.prepare(comps)
        elif subject.lora is not None:
            return self._load_lora(path, subject)
        else:
            raise HifiError("DreamBooth folders are served by pointing HIFILIGHT_MODEL at them")
        photos = path.with_suffix("")
        return Loaded(subject, comps, photos if photos.is_dir() else None)

    def _load_lora(self, path: Path, subject: Subject) -> Loaded:
        """Every LoRA subject is one named adapter on the one shared UNet (megabytes each, not a model copy);
        `_activate` switches to the request's adapter under the model lock."""
        if self.settings.backend != "torch":
            raise HifiError("LoRA subjects need the torch backend (the exported ONNX UNet has no adapters)")
        adapter = f"lora{len(self._adapters)}"  # peft adapter names become module keys: no dots from file names
        try:
            with warnings.catch_warnings():  # peft warns on every adapter after the first: here that is the point
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                subject.prepare(self.comps, adapter)
        except Exception:
            if adapter in getattr(self.comps.unet, "peft_config", {}):
                self.comps.unet.delete_adapters(adapter)  # a half-loaded adapter must not stay on the UNet
            raise
        self._adapters.append(adapter)
        photos = path.with_suffix("")
        return Loaded(subject, self.comps, photos if photos.is_dir() else None, adapter)

    def _ready(self, item: Loaded) -> None:
        """Under the lock, before a generation: this thread's torch threads (a per-thread setting under OpenMP, and
        BentoML's pool threads differ) and the request's LoRA adapter alone on the shared UNet, none for other kinds."""
        import torch

        torch.set_num_threads(self.threads)
        if not self._adapters:
            return
        if item.adapter is None:
            self.comps.unet.disable_lora()
        else:
            self.comps.unet.enable_lora()
            self.comps.unet.set_adapters([item.adapter])

    def describe(self) -> list[dict]:
        out = []
        for name, item in self.subjects.items():
            s = item.subject
            if s.lora is not None:
                meta = {"base_model": s.base_model}
            else:
                meta = (s.artifact.metadata if s.artifact is not None else s.embedding.metadata) or {}
            stepwise = s.artifact is not None and s.artifact.c_s_t is not None
            out.append(
                {
                    "name": name,
                    "kind": s.kind,
                    "class_name": s.class_name,
                    "word": s.word,
                    "resolution": s.resolution,
                    "stepwise": stepwise,
                    "reference_guidance": item.photos is not None,
                    "photos": len(self.photos(name)),
                    "base_model": meta.get("base_model"),
                }
            )
        return out

    def photos(self, subject: str) -> list[Path]:
        """The subject's source photos (what reference guidance reads), by name; none for a subject without them."""
        item = self._known(subject)
        if item.photos is None:
            return []
        from hifilight.data.images import IMAGE_EXTENSIONS

        return sorted(p for p in item.photos.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    def photo(self, subject: str, index: int, mask: bool = False) -> Image.Image:
        """Photo `index` of a subject (or its mask, `masks/<same name>.png` in the DreamBench layout, when it has
        one); the index is checked against the listing, so no path from a request reaches the file system."""
        photos = self.photos(subject)
        if not 0 <= index < len(photos):
            raise RequestError(f"photo index must be in 0..{len(photos) - 1} for {shown(subject)}, got {index}")
        if not mask:
            return Image.open(photos[index]).convert("RGB")
        path = photos[index].parent / "masks" / f"{photos[index].stem}.png"
        if not path.is_file():
            raise RequestError(f"subject {shown(subject)} has no mask for photo {index}", status=404)
        return Image.open(path).convert("L")

    def _known(self, subject: str) -> Loaded:
        if subject in self.subjects:
            return self.subjects[subject]
        if subject in self.skipped:
            raise RequestError(
                f"subject {shown(subject)} was skipped when the service started: {self.skipped[subject]}", 404
            )
        known = ", ".join(sorted(self.subjects)) or "none loaded"
        raise RequestError(f"unknown subject {shown(subject)}; known: {known}", status=404)

    def validate(
        self,
        prompt: str,
        subject: str,
        steps: int,
        guidance_scale: float,
        width: int,
        height: int,
        reference_guidance: bool,
        guide: GuideRequest | None = None,
    ) -> Loaded:
        s = self.settings
        self._known(subject)
        if not prompt.strip() or len(prompt) > s.max_prompt_chars:
            raise RequestError(f"prompt must have 1..{s.max_prompt_chars} characters, got {len(prompt)}")
        if not 1 <= steps <= MAX_STEPS:
            raise RequestError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
        if not 0 <= guidance_scale <= MAX_GUIDANCE:  # also NaN, which no comparison holds for
            raise RequestError(f"guidance_scale must be a finite number in 0..{MAX_GUIDANCE:g}, got {guidance_scale}")
        for name, value in (("width", width), ("height", height)):
            if value % 8 or not 8 <= value <= s.max_size:
                raise RequestError(f"{name} must be a multiple of 8 in 8..{s.max_size}, got {value}")
        guided = (guide or GuideRequest()).settings(steps, s.max_inner_steps) if reference_guidance else None
        inner = (guided.start - guided.end + 1) * guided.inner_steps if guided else 0
        work = width * height * (steps + inner) / 1e6
        if work > s.max_work:
            raise RequestError(
                f"this request is {work:.2f} megapixel-steps (width x height x steps / 1e6, each inner step of "
                f"reference guidance one more step), more than this service allows ({s.max_work:g}); lower steps, "
                "the size or guide_inner_steps",
                status=413,
            )
        item = self.subjects[subject]
        if reference_guidance and (
            item.photos is None or width != height or self.settings.backend != "torch" or guidance_scale == 1.0
        ):
            raise RequestError(
                "reference_guidance needs the subject's photos in <subjects>/<name>/, width == height, "
                "guidance_scale != 1 and the torch backend"
            )
        try:
            render(prompt, item.subject.word, flag="prompt")
        except HifiError as err:
            raise RequestError(str(err)) from None
        return item

    def generate(
        self,
        prompt: str,
        subject: str,
        seed: int = 0,
        steps: int = 50,
        guidance_scale: float = 7.5,
        width: int = 512,
        height: int = 512,
        reference_guidance: bool = False,
        cancel: threading.Event | None = None,
        guide: GuideRequest | None = None,
    ) -> Image.Image:
        """One image. `cancel` (set when the client goes away) skips a request still waiting for the model and
        stops a running one at its next DDIM step (reference guidance: before it starts). `guide`: t_s, t_e and J
        of reference guidance (default: the paper's 40 and 10 of 50 steps, scaled to `steps`, and J = 10)."""
        guide = guide or GuideRequest()
        item = self.validate(prompt, subject, steps, guidance_scale, width, height, reference_guidance, guide)
        job = make_jobs([prompt], item.subject.word, seed, 1)
        if not reference_guidance and self.batching:
            return self._batched(subject, job[0], steps, guidance_scale, width, height, cancel)
        stop = StopWhenSet(cancel) if cancel is not None else None
        with self.lock:
            if stop is not None:
                stop.check()
            self._ready(item)
            if reference_guidance:
                return self._guided(
                    item, job, steps, guidance_scale, width, guide.settings(steps, self.settings.max_inner_steps)
                )
            out = generate(
                item.comps,
                item.subject.artifact,
                job,
                steps,
                guidance_scale,
                (height, width),
                callbacks=[stop] if stop else [],
                progress=False,
            )
        return to_pil(out[0])

    @property
    def batching(self) -> bool:
        return self.settings.max_batch > 1 and self.settings.backend == "torch"

    def _batched(self, subject, job, steps, guidance, width, height, cancel) -> Image.Image:
        """One request through the batcher: denoised with the waiting requests of the same subject and settings;
        the same seed gives the same image as alone (x_T comes from each request's own seed)."""
        s = self.settings
        if self.batcher is None:
            self.batcher = KeyedBatcher(self._run_batch, s.max_batch, s.max_wait_ms / 1000, s.max_queue)
        cancelled = (lambda: cancel.is_set()) if cancel is not None else (lambda: False)
        try:
            image = self.batcher.submit((subject, steps, guidance, width, height), (job, cancel), cancelled)
        except QueueFull as err:
            raise RequestError(f"{err}; retry later", status=503) from None
        if image is None:
            raise Cancelled()
        return image

    def _run_batch(self, key: tuple, payloads: list[tuple[Job, threading.Event | None]]) -> list[Image.Image]:
        subject, steps, guidance, width, height = key
        item = self.subjects[subject]
        stop = StopWhenSet(events=[c for _, c in payloads]) if all(c is not None for _, c in payloads) else None
        with self.lock:
            self._ready(item)
            jobs = [job for job, _ in payloads]
            out = generate(
                item.comps,
                item.subject.artifact,
                jobs,
                steps,
                guidance,
                (height, width),
                len(jobs),
                callbacks=[stop] if stop else [],
                progress=False,
            )
        return [to_pil(x) for x in out]

    def _guided(self, item: Loaded, job: list[Job], steps: int, guidance: float, size: int, settings) -> Image.Image:
        from hifilight.options import ReferenceOptions, SourceOptions, build_guide, resolve_device
        from hifilight.perception.encoders import DinoEncoder
        from hifilight.sampling.reference import reference_guided

        options = ReferenceOptions(dino_model=self.settings.dino_model, guide=settings)
        device = resolve_device(self.settings.device)
        if self._dino is None:
            self._dino = DinoEncoder.from_pretrained(self.settings.dino_model, device, flag="HIFILIGHT_DINO_MODEL")
        key = (id(item), size)
        if key not in self._guides:  # photos, masks and their DINO embeddings: once per subject and size
            self._guides[key] = build_guide(
                item.subject, SourceOptions(subject_dir=item.photos), options, size, device, self._dino
            )
        guide = dataclasses.replace(self._guides[key], guide=options.guide)
        return reference_guided(item.comps, item.subject.artifact, job, guide, steps, guidance, size, progress=False)[
            0
        ].final


def exit_with_parent(interval: float = 1.0) -> threading.Thread:
    """Make this process end when the process that started it dies (a BentoML worker whose `bentoml serve` was
    killed with -9 would otherwise keep the port and keep computing): a daemon thread watches the parent id."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:  # re-parented: the server is gone
                log.warning("the server process %d is gone; this worker exits", parent)
                os._exit(0)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def start_service(port: int, env: dict, log, cwd: Path | None = None):
    """`bentoml serve serve.service:HifiService` on 127.0.0.1:port as a subprocess in its own session (stop it with
    `stop_service`)."""
    import subprocess
    import sys

    bentoml = Path(sys.executable).parent / "bentoml"
    cmd = [str(bentoml), "serve", "serve.service:HifiService", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        cmd,
        cwd=cwd or Path(__file__).resolve().parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(url: str, proc, timeout: float = 120.0) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                return
        except OSError:  # refused, reset or timed out while starting
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the service at {url} did not become ready")
        time.sleep(0.5)


def stop_service(proc, timeout: float = 20.0) -> None:
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


# ---- the HTTP gate in front of the service (an ASGI middleware; BentoML mounts it in serve/service.py) ----------
# probes and the web page (markup only; every call it makes carries the token) stay open without the token
OPEN_PATHS = ("/readyz", "/livez", "/healthz", "/metrics", "/ui", "/ui/")


class RequestGate:
    """Refuses, before the service sees them, bodies over `max_body` bytes (413) and, when `token` is set, requests
    without `Authorization: Bearer <token>` (401; the probes in OPEN_PATHS stay open). Errors are one JSON shape,
    {"error": "..."}. A chunked body is read up to the limit and replayed to the service."""

    def __init__(self, app, max_body: int = 1_000_000, token: str | None = None):
        self.app, self.max_body, self.token = app, max_body, (token or None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _one_error_shape(send)
        headers = dict(scope.get("headers") or [])
        if self.token and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token.encode()):
                return await _reply(send, 401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _drain(receive, DRAIN_LIMIT)  # read (and drop) what the client sends, so it can read the answer
            return await _reply(send, 413, f"request body over {self.max_body} bytes (HIFILIGHT_MAX_BODY)")
        if length is not None:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:  # no length given: read it here, within the limit
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _reply(send, 413, f"request body over {self.max_body} bytes (HIFILIGHT_MAX_BODY)")
        return await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}]), send)


def _one_error_shape(send):
    """Pass responses through, rewriting a 4xx body that is a one-element JSON list ([{"error": ...}], as BentoML
    answers some client errors) to the object inside, so every error has the shape {"error": ...}."""
    held: dict = {}

    async def wrapped(message):
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held.update(start=message, body=b"")
            return
        if not held or message["type"] != "http.response.body":
            return await send(message)
        held["body"] += message.get("body", b"")
        if message.get("more_body"):
            return
        body = held["body"]
        try:
            data = json.loads(body)
            if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
                body = json.dumps(data[0]).encode()
        except ValueError:
            pass
        start = held.pop("start")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


DRAIN_LIMIT = 32_000_000  # bytes of an oversized body read and dropped before the 413; beyond it the answer is sent


async def _drain(receive, limit: int) -> None:
    seen, more = 0, True
    while more and seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        more = message.get("more_body", False)


def _replay(messages: list[dict]):
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ClientErrorFilter(logging.Filter):
    """A client's mistake is one WARNING line, not an ERROR with a traceback: for log records whose exception is a
    4xx (an `error_code` below 500, or a pydantic ValidationError), drop the traceback and name the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        code = getattr(getattr(exc, "error_code", None), "value", getattr(exc, "error_code", None))
        client = (isinstance(code, int) and 400 <= code < 500) or type(exc).__name__ == "ValidationError"
        if exc is not None and client:
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
