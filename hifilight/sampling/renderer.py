"""One renderer for every path that makes images of a learned subject (`predict`, `api.render_subject`, the
service, the evaluation runner), as segment-anything's `SamPredictor` is for masks: explicit cached state (the base
model's components, the subject prepared on them, the guide for reference-guided generation), `set_subject`, then
`render(jobs)` as often as needed, and `reset`. What differs between subject kinds lives in the subject types
(`Subject.prepare`, `Subject.stepwise`); naming and writing the images belongs to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from hifilight.data.images import to_pil
from hifilight.sampling import reference as algorithm2  # looked up at call time (tests stand in for it)
from hifilight.sampling.engine import StepCallback
from hifilight.sampling.generate import Job, generate
from hifilight.sampling.reference import ReferenceGuide, ReferenceRecord
from hifilight.subjects import Subject


@dataclass
class Rendered:
    """One job's image; with reference guidance also what Algorithm 2 did (the unguided image, the reference, the
    masks, the losses), for the caller to report or write."""

    image: Image.Image
    record: ReferenceRecord | None = None


class SubjectRenderer:
    """Renders one subject at a time on one set of components (`hifilight.models.SDComponents`)."""

    def __init__(self, comps):
        self.comps = comps
        self.subject: Subject | None = None
        self.stepwise = False
        self.guide: ReferenceGuide | None = None
        self._set = False

    def set_subject(
        self,
        subject: Subject | None,
        stepwise: bool | None = None,
        guide: ReferenceGuide | None = None,
        prepare: bool = True,
    ) -> SubjectRenderer:
        """Hold `subject` (prepared on the components unless `prepare` is False: the caller did, e.g. a service that
        holds several LoRA adapters), whether to use its step-wise embeddings, and the guide for reference guidance.
        None renders the base model alone (a table's class-word rows)."""
        if subject is not None and prepare:
            subject.prepare(self.comps)
        self.stepwise = subject.stepwise(stepwise) if subject is not None else False
        self.subject, self.guide, self._set = subject, guide, True
        return self

    def render(
        self,
        jobs: Sequence[Job],
        steps: int = 50,
        guidance: float = 7.5,
        size: int | tuple[int, int] | None = None,
        batch_size: int = 4,
        guided: bool = False,
        callbacks: Sequence[StepCallback] = (),
        progress: bool = True,
    ) -> list[Rendered]:
        """The jobs' images in job order (`size`: the side, or (height, width); default the subject's resolution);
        `guided`: reference-guided generation (Algorithm 2) with the guide given to `set_subject`."""
        if not self._set:
            raise RuntimeError("SubjectRenderer.render: call set_subject first")
        if size is None and self.subject is None:
            raise ValueError("SubjectRenderer.render: the base model alone needs a size")
        size = size or self.subject.resolution
        artifact = self.subject.artifact if self.subject is not None else None
        if guided:
            if self.guide is None:
                raise RuntimeError("SubjectRenderer.render(guided=True): set_subject(..., guide=...) first")
            records = algorithm2.reference_guided(
                self.comps, artifact, list(jobs), self.guide, steps, guidance, size, batch_size, self.stepwise, progress
            )
            return [Rendered(r.final, r) for r in records]
        images = generate(
            self.comps, artifact, list(jobs), steps, guidance, size, batch_size, callbacks, progress, self.stepwise
        )
        return [Rendered(to_pil(x)) for x in images]

    def reset(self) -> None:
        """Forget the subject and its guide (the components stay loaded)."""
        self.subject, self.stepwise, self.guide, self._set = None, False, None, False
