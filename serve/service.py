"""BentoML service for tuned subjects: `bentoml serve serve.service:HifiService` (or `make serve`).

Configuration by environment (see `hifilight.serving.ServeSettings`): HIFILIGHT_MODEL (default
`toysd`, ToyWorld's model; a hub id or local folder for real use), HIFILIGHT_SUBJECTS_DIR (default serve/subjects),
HIFILIGHT_BACKEND torch|onnx with HIFILIGHT_ONNX_DIR, HIFILIGHT_MAX_SIZE, HIFILIGHT_DEVICE, HIFILIGHT_DINO_MODEL,
HIFILIGHT_MAX_WORK (megapixel-steps per request), HIFILIGHT_MAX_BODY (bytes), HIFILIGHT_API_TOKEN (require
`Authorization: Bearer <token>`; the probes stay open). Bad values get a 400 (unknown subject: 404; more work than
allowed: 413) with a one-line message. One generation runs at a time (a lock).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.exceptions import BentoMLException
from PIL.Image import Image
from pydantic import Field

from hifilight.serving import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_STEPS,
    Cancelled,
    ClientErrorFilter,
    GuideRequest,
    RequestError,
    RequestGate,
    ServeSettings,
    SubjectServer,
    exit_with_parent,
)
from hifilight.serving.learning import Learner, LearnError, LearnRequest

SETTINGS = ServeSettings.from_env()


@bentoml.service(name="hifilight", traffic={"timeout": 600})
class HifiService:
    def __init__(self) -> None:
        exit_with_parent()  # a worker must not outlive a killed `bentoml serve`
        self.server = SubjectServer(SETTINGS).load()
        self.learner = Learner(self.server, SETTINGS.fit_configs)

    @bentoml.api
    async def generate(
        self,
        prompt: Annotated[str, Field(min_length=1, max_length=SETTINGS.max_prompt_chars)],
        subject: Annotated[str, Field(min_length=1, max_length=200)],
        seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0,
        steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 50,
        guidance_scale: Annotated[float, Field(ge=0, le=MAX_GUIDANCE, allow_inf_nan=False)] = 7.5,
        width: Annotated[int, Field(ge=8, le=SETTINGS.max_size, multiple_of=8)] = 512,
        height: Annotated[int, Field(ge=8, le=SETTINGS.max_size, multiple_of=8)] = 512,
        reference_guidance: bool = False,
        guide_start: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None,
        guide_end: Annotated[int, Field(ge=1, le=MAX_STEPS)] | None = None,
        guide_inner_steps: Annotated[int, Field(ge=0, le=SETTINGS.max_inner_steps)] = 10,
        ctx: bentoml.Context = None,
    ) -> Image:
        """A PNG of `prompt` ({} marks the subject) with the named subject; with reference_guidance, guide_start /
        guide_end are t_s / t_e (default: 80% and 20% of steps, the paper's 40 and 10 of 50) and guide_inner_steps J."""
        cancel = threading.Event()  # set when the client disconnects: the model is freed at the next step
        guide = GuideRequest(guide_start, guide_end, guide_inner_steps)
        args = (prompt, subject, seed, steps, guidance_scale, width, height, reference_guidance, cancel, guide)
        work = asyncio.ensure_future(asyncio.to_thread(self.server.generate, *args))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=0.5)
                if not work.done() and ctx is not None and await ctx.request.is_disconnected():
                    cancel.set()
            return work.result()
        except RequestError as err:  # (a cancelled request's client is gone; 408 goes nowhere)
            code = HTTPStatus.REQUEST_TIMEOUT if isinstance(err, Cancelled) else HTTPStatus(err.status)
            raise BentoMLException(str(err), error_code=code) from None

    @bentoml.api
    def subjects(self) -> dict:
        """The loaded subjects with their metadata, and the files that were skipped (with why)."""
        return {"subjects": self.server.describe(), "skipped": self.server.skipped}

    @bentoml.api
    def subject_photo(
        self,
        subject: Annotated[str, Field(min_length=1, max_length=200)],
        index: Annotated[int, Field(ge=0, le=1000)] = 0,
        mask: bool = False,
    ) -> Image:
        """Source photo `index` of a subject (`mask`: its mask), as the web page shows them."""
        try:
            return self.server.photo(subject, index, mask)
        except RequestError as err:
            raise BentoMLException(str(err), error_code=HTTPStatus(err.status)) from None

    @bentoml.task
    def fit(
        self,
        name: Annotated[str, Field(min_length=1, max_length=64)],
        class_name: Annotated[str, Field(min_length=1, max_length=40)],
        photos: Annotated[list[str], Field(min_length=3, max_length=6)],
        method: str = "hifi_ti",
        preset: str = "toyworld_hifi",
        seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0,
    ) -> dict:
        """Learn a subject from 3-6 photos (base64-encoded image files) and serve it when done (POST /fit/submit,
        then GET /fit/status and /fit/get?task_id=...; /fit_progress follows it, /fit_cancel stops it). One fit at a
        time; a failed or cancelled fit leaves nothing behind."""
        try:
            data = [base64.b64decode(p, validate=True) for p in photos]
        except ValueError:
            raise BentoMLException(
                "photos: each must be a base64-encoded image file", error_code=HTTPStatus(400)
            ) from None
        try:
            return self.learner.learn(LearnRequest(name, class_name, method, preset, seed), data)
        except LearnError as err:
            raise BentoMLException(str(err), error_code=HTTPStatus(err.status)) from None

    @bentoml.api
    def fit_progress(self) -> dict:
        """The current (or last) fit: state idle / fitting / done / failed / cancelled, step and total, the error."""
        return self.learner.progress() | {"presets": self.learner.presets()}

    @bentoml.api
    def fit_cancel(self) -> dict:
        """Stop the running fit at its next step (nothing it made is kept)."""
        return {"cancelled": self.learner.cancel()}


PAGE = Path(__file__).resolve().parent / "static" / "index.html"


async def page(scope, receive, send) -> None:
    """The web page (GET /ui): markup and script only; it calls the API above with the user's token."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": PAGE.read_bytes()})


HifiService.mount_asgi_app(page, path="/ui")


# client errors are logged as one line (BentoML logs each with a traceback at ERROR)
logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorFilter())
# body-size limit and the optional bearer token, before any request reaches the API
HifiService.add_asgi_middleware(RequestGate, max_body=SETTINGS.max_body, token=SETTINGS.api_token)
