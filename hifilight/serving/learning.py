"""Learning a subject through the service: photos and a class word in, a fitted subject added to the served set.

`Learner.learn` is what the service's fit task runs: it checks the request (name, class word, method, preset, 3-6
photos of sane sizes) before any work, runs the same fit as `hifilight fit` (`hifilight.api.fit`, the base model the
service serves, a preset config from the service's configs folder, the seed) in a temporary folder, and only when
the fit and loading it both succeed moves the subject and its photos into the subjects folder and serves it. A
failed or cancelled fit leaves nothing behind. One fit runs at a time; a second request while one runs is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hifilight.errors import HifiError, shown

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CLASS_WORD = re.compile(r"[A-Za-z][A-Za-z -]{0,39}")
METHODS = ("hifi_ti", "textual_inversion", "lora")  # DreamBooth writes a whole model: served with HIFILIGHT_MODEL
MIN_PHOTOS, MAX_PHOTOS = 3, 6
MIN_SIDE, MAX_SIDE = 32, 4096


class LearnError(ValueError):
    """A request the learner refuses: `status` 400 (bad input), 409 (the name is taken, or a fit is running)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LearnRequest:
    name: str  # the new subject's name (its file stem)
    class_name: str  # the class word ("dog", "star")
    method: str = "hifi_ti"
    preset: str = "toyworld_hifi"  # a fit config in the configs folder, without .yaml
    seed: int = 0


def read_photos(photos: list[bytes]) -> list[Image.Image]:
    """Decode 3-6 uploaded images; each must be an image between MIN_SIDE and MAX_SIDE pixels a side."""
    if not MIN_PHOTOS <= len(photos) <= MAX_PHOTOS:
        raise LearnError(f"photos: send {MIN_PHOTOS}-{MAX_PHOTOS} photos of the subject, got {len(photos)}")
    images = []
    for i, data in enumerate(photos):
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as err:  # noqa: BLE001 - any decoder error is the client's bad file
            raise LearnError(f"photo {i}: not a readable image ({type(err).__name__})") from None
        if not (min(image.size) >= MIN_SIDE and max(image.size) <= MAX_SIDE):
            raise LearnError(f"photo {i}: {image.size[0]}x{image.size[1]} px; each side must be {MIN_SIDE}..{MAX_SIDE}")
        images.append(image.convert("RGB"))
    return images


class Learner:
    """Fits subjects for a `SubjectServer` (one at a time) and adds them to what it serves."""

    def __init__(self, server, configs: Path):
        self.server, self.configs = server, Path(configs)
        self._busy = threading.Lock()
        self._progress: dict = {"state": "idle"}
        self._cancel: Path | None = None

    def presets(self) -> list[str]:
        return sorted(p.stem for p in self.configs.glob("*.yaml")) if self.configs.is_dir() else []

    def check(self, request: LearnRequest) -> Path:
        """The subject's future path; LearnError naming the field for anything that would fail later."""
        folder = Path(self.server.settings.subjects_dir)
        if not NAME.fullmatch(request.name):
            raise LearnError(f"name {shown(request.name)}: use 1-64 letters, digits, _ or -, starting alphanumeric")
        taken = [folder / f"{request.name}.safetensors", folder / request.name]  # the subject and its photos folder
        if request.name in self.server.subjects or any(path.exists() for path in taken):
            raise LearnError(f"name {request.name!r} is taken; choose another", status=409)
        if not CLASS_WORD.fullmatch(request.class_name):
            raise LearnError(f"class_name {shown(request.class_name)}: a word or two, letters only (e.g. dog)")
        if request.method not in METHODS:
            raise LearnError(f"method {shown(request.method)}: use one of {', '.join(METHODS)}")
        if request.preset not in self.presets():
            raise LearnError(f"preset {shown(request.preset)}: use one of {', '.join(self.presets()) or 'none'}")
        if not 0 <= request.seed < 2**31:
            raise LearnError(f"seed must be in 0..{2**31 - 1}, got {request.seed}")
        return folder / f"{request.name}.safetensors"

    def progress(self) -> dict:
        """{"state": idle | fitting | done | failed | cancelled, "name", "step", "total", "stage", "error"}."""
        state = dict(self._progress)
        if state.get("state") == "fitting" and state.get("file") and Path(state["file"]).is_file():
            with contextlib.suppress(OSError, ValueError):  # being replaced this instant: the last reading stands
                state |= json.loads(Path(state["file"]).read_text())
        state.pop("file", None)
        return state

    def cancel(self) -> bool:
        """Ask the running fit to stop at its next step; False when none runs."""
        if self._cancel is None:
            return False
        self._cancel.touch()
        return True

    def learn(self, request: LearnRequest, photos: list[bytes]) -> dict:
        """Fit and serve a new subject; returns its description (as `subjects` lists it)."""
        try:
            target = self.check(request)
            images = read_photos(photos)
        except LearnError as err:
            if not self._busy.locked():  # a refusal is the last fit's news, unless one is running
                self._progress = {"state": "failed", "name": request.name, "error": str(err)}
            raise
        if not self._busy.acquire(blocking=False):
            raise LearnError("a fit is already running (one at a time); retry when it ends", status=409)
        try:
            with tempfile.TemporaryDirectory(prefix="learn_") as tmp:
                return self._fit(request, images, target, Path(tmp))
        except LearnError:
            raise
        except Exception as err:
            from hifilight.training.callbacks import FitCancelled

            cancelled = isinstance(err, FitCancelled) or isinstance(err.__cause__, FitCancelled)
            message = "cancelled" if cancelled else (str(err) if isinstance(err, HifiError) else repr(err))
            self._progress = {"state": "cancelled" if cancelled else "failed", "name": request.name, "error": message}
            raise LearnError(
                f"fit of {request.name!r} {'was cancelled' if cancelled else 'failed: ' + message}"
            ) from None
        finally:
            self._cancel = None
            self._busy.release()

    def _fit(self, request: LearnRequest, images: list[Image.Image], target: Path, tmp: Path) -> dict:
        from hifilight.api import fit

        photos = tmp / request.name
        photos.mkdir()
        for i, image in enumerate(images):
            image.save(photos / f"{i:02d}.png")
        self._cancel = tmp / "cancel"
        progress = tmp / "progress.json"
        self._progress = {"state": "fitting", "name": request.name, "step": 0, "total": None, "file": str(progress)}
        callback = {"class_path": "hifilight.training.callbacks.ProgressFile",
                    "init_args": {"path": str(progress), "cancel": str(self._cancel)}}  # fmt: skip
        options = {
            "model.pretrained": self.server.settings.model,
            "seed_everything": request.seed,
            "trainer.callbacks": [callback],
            "trainer.default_root_dir": str(tmp / "logs"),
            "trainer.logger": False,
        }
        out = tmp / f"{request.name}.safetensors"
        fit(photos, request.class_name, out, request.method, config=self.configs / f"{request.preset}.yaml",
            options=options)  # fmt: skip
        return self._serve(request.name, out, photos, target)

    def _serve(self, name: str, out: Path, photos: Path, target: Path) -> dict:
        """Move the subject in (photos first, the file last, each in one rename) and load it; undone on failure."""
        folder = target.parent
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(photos), str(folder / name))
        try:
            shutil.move(str(out), str(target))
            self.server.add(target)
        except Exception:
            target.unlink(missing_ok=True)
            shutil.rmtree(folder / name, ignore_errors=True)
            raise
        self._progress = {"state": "done", "name": name}
        return next(d for d in self.server.describe() if d["name"] == name)
