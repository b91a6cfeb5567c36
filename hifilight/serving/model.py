"""The model side of the service: the loaded subjects (each file of the subjects folder, or why it was skipped),
request validation and generation, batched where requests allow. Kept free of BentoML so it can be tested and
reused directly. Requests name subjects by their file stem only; no path from a request reaches the file system.
One generation runs on the model at a time (a lock around it)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from hifilight.batcher import KeyedBatcher, QueueFull
from hifilight.errors import HifiError, shown
from hifilight.prompts import render
from hifilight.sampling.engine import StopWhenSet
from hifilight.sampling.generate import Job, make_jobs
from hifilight.sampling.renderer import SubjectRenderer
from hifilight.serving.requests import MAX_GUIDANCE, MAX_STEPS, Cancelled, GuideRequest, RequestError
from hifilight.serving.settings import ServeSettings
from hifilight.subjects import Subject, load_subject

log = logging.getLogger("hifilight.serve")


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
    renderer: SubjectRenderer | None = None  # renders it on `comps` (the subject already prepared there)

    def __post_init__(self) -> None:
        self.renderer = self.renderer or SubjectRenderer(self.comps).set_subject(self.subject, prepare=False)


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
        stop = StopWhenSet(cancel, error=Cancelled) if cancel is not None else None
        with self.lock:
            if stop is not None:
                stop.check()
            self._ready(item)
            if reference_guidance:
                return self._guided(
                    item, job, steps, guidance_scale, width, guide.settings(steps, self.settings.max_inner_steps)
                )
            rendered = item.renderer.render(
                job, steps, guidance_scale, (height, width), callbacks=[stop] if stop else [], progress=False
            )
        return rendered[0].image

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
        stop = (
            StopWhenSet(events=[c for _, c in payloads], error=Cancelled)
            if all(c is not None for _, c in payloads)
            else None
        )
        with self.lock:
            self._ready(item)
            jobs = [job for job, _ in payloads]
            rendered = item.renderer.render(
                jobs, steps, guidance, (height, width), len(jobs), callbacks=[stop] if stop else [], progress=False
            )
        return [r.image for r in rendered]

    def _guided(self, item: Loaded, job: list[Job], steps: int, guidance: float, size: int, settings) -> Image.Image:
        from hifilight.guide_builder import build_guide
        from hifilight.options import ReferenceOptions, SourceOptions, resolve_device
        from hifilight.perception.encoders import DinoEncoder

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
        renderer = item.renderer.set_subject(item.subject, guide=guide, prepare=False)
        return renderer.render(job, steps, guidance, size, guided=True, progress=False)[0].image
