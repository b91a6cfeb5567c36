"""Reference-guided generation (Algorithm 2) end to end on the tiny model with synthetic sources and masks."""

import numpy as np
import pytest
import torch
from conftest import make_artifact
from PIL import Image

from hifilight.data.images import to_pil
from hifilight.data.masks import FilesMaskProvider
from hifilight.perception.encoders import DinoEncoder
from hifilight.sampling.generate import generate, make_jobs
from hifilight.sampling.guidance import GuidanceSettings
from hifilight.sampling.reference import (
    STAGES,
    ReferenceGuide,
    SourceSet,
    load_sources,
    reference_guided,
    select_reference,
)

STEPS, RES = 8, 64


class FixedEncoder:
    """Synthetic DINO: the sources get the rows of `table`, every generated image gets `query`."""

    name = "fixed"

    def __init__(self, query):
        self.query = query

    def encode_images(self, images):
        return self.query.expand(len(images), -1)


def _box(size=RES, box=(16, 48, 12, 40)):
    m = torch.zeros(1, size, size)
    m[:, box[0] : box[1], box[2] : box[3]] = 1
    return m


def _sources():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)) for _ in range(3)]
    masks = [_box(box=(10, 40, 10, 40)), _box(box=(20, 50, 8, 30)), _box(box=(5, 60, 5, 60))]
    return SourceSet(["a.png", "b.png", "c.png"], images, masks, torch.eye(3, 8))


def _guide(settings, generated=lambda path, image: _box(), query=None):
    query = torch.tensor([0.1, 0.9, 0.2, 0, 0, 0, 0, 0]) if query is None else query
    return ReferenceGuide(_sources(), FixedEncoder(query), generated, lambda image: "a photo of a dog", settings)


def _run(tiny, settings, **kwargs):
    art = make_artifact(tiny, STEPS)
    jobs = make_jobs(["a photo of a {}"], "dog", seed=0, num_images=2)
    guide = _guide(settings, **kwargs)
    return art, jobs, reference_guided(tiny, art, jobs, guide, STEPS, 7.5, RES, batch_size=1, progress=False)


def test_select_reference_picks_the_closest_embedding():
    table = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert select_reference(torch.tensor([0.5, 0.9]), table)[0] == 1
    assert select_reference(torch.tensor([3.0, -0.1]), table)[0] == 0  # cosine: the norm does not matter
    k, sim = select_reference(torch.tensor([0.0, 2.0]), table)
    assert k == 2 and sim == pytest.approx(1.0)


def test_no_guidance_and_no_substitution_equals_plain_generation(tiny):
    art, jobs, records = _run(tiny, GuidanceSettings(start=6, end=2, inner_steps=0, substitute=False))
    plain = generate(tiny, art, jobs, STEPS, 7.5, RES, batch_size=1, progress=False)
    for record, image in zip(records, plain, strict=True):
        assert np.array_equal(np.asarray(record.final), np.asarray(to_pil(image)))
        assert np.array_equal(np.asarray(record.first), np.asarray(to_pil(image)))


def test_guided_run_uses_the_closest_source_and_lowers_the_eq10_loss(tiny):
    _, _, records = _run(tiny, GuidanceSettings(start=6, end=2, inner_steps=2))
    for record in records:
        assert record.skipped is None and record.reference == 1  # query is closest to row 1
        assert record.alignment.iou > 0.8  # a box aligns to a box
        assert record.mask_r_aligned.shape == (1, RES, RES)
        assert all(record.log.after[t] < record.log.before[t] for t in record.log.before)
        assert not np.array_equal(np.asarray(record.final), np.asarray(record.first))
        assert record.caption == "a photo of a dog"
        assert set(record.seconds) == set(STAGES) and all(v >= 0 for v in record.seconds.values())


def test_empty_generated_mask_keeps_the_unguided_image_with_a_warning(tiny):
    with pytest.warns(UserWarning, match="empty M_g"):
        _, _, records = _run(
            tiny,
            GuidanceSettings(start=6, end=2, inner_steps=1),
            generated=lambda path, image: torch.zeros(1, RES, RES),
        )
    assert all(r.skipped and r.final is r.first for r in records)
    assert all(set(r.seconds) == {"first", "segmentation"} for r in records)  # nothing after the empty mask


def test_load_sources_crops_images_and_masks_alike(subject_dir):
    encoder = DinoEncoder.from_pretrained("tiny")
    sources = load_sources(subject_dir, FilesMaskProvider(subject_dir / "masks"), 32, encoder)
    assert sources.names == ["00.png", "01.png", "02.png"]
    assert all(img.size == (32, 32) for img in sources.images)
    # the 48x40 photos are centre-cropped to 40x40 (columns 4..44): the box (rows 10-30, cols 12-36) -> 8-32
    expected = torch.zeros(1, 40, 40)
    expected[:, 10:30, 8:32] = 1
    resized = torch.nn.functional.interpolate(expected[None], size=(32, 32), mode="nearest")[0]
    assert (sources.masks[0] != resized).float().mean() < 0.05
    assert sources.embeddings.shape == (3, 32)


@pytest.mark.numerical
def test_batched_guidance_gives_each_image_what_it_gets_alone(tiny):
    """batch_size 3 (one image skipped in the middle: its M_g is empty) = batch_size 1, image by image."""

    def generated(path, image):
        return torch.zeros(1, RES, RES) if path.name == "generated_1.png" else _box()

    art = make_artifact(tiny, STEPS)
    jobs = make_jobs(["a photo of a {}"], "dog", seed=0, num_images=3)
    guide = _guide(GuidanceSettings(start=6, end=4, inner_steps=1), generated=generated)
    with pytest.warns(UserWarning, match="empty M_g"):
        alone = reference_guided(tiny, art, jobs, guide, STEPS, 7.5, RES, batch_size=1, progress=False)
        batched = reference_guided(tiny, art, jobs, guide, STEPS, 7.5, RES, batch_size=3, progress=False)
    assert [r.skipped is not None for r in batched] == [False, True, False]
    for a, b in zip(alone, batched, strict=True):
        diff = np.abs(np.asarray(a.final, dtype=int) - np.asarray(b.final, dtype=int))
        assert diff.max() <= 1  # equal up to float summation order in batched convolutions
        assert a.reference == b.reference and a.log.before == pytest.approx(b.log.before, rel=1e-4)
    assert not np.array_equal(np.asarray(batched[0].final), np.asarray(batched[0].first))
