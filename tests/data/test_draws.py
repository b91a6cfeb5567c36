"""Global sample indices: N processes with batch b draw what one process with batch N*b draws."""

import torch

from hifilight.data import SubjectDataModule
from hifilight.data.draws import StepBatchSampler, noise_and_timesteps


def test_shards_of_a_step_are_the_single_process_batch():
    single = list(StepBatchSampler(4, 3, lambda: (5, 0, 1)))
    ranks = [list(StepBatchSampler(2, 3, lambda r=r: (5, r, 2))) for r in range(2)]
    for k in range(3):
        assert single[k] == ranks[0][k] + ranks[1][k]
    assert single[0] == [20, 21, 22, 23]  # step 5 starts at sample 5 * 4


def test_samples_depend_only_on_seed_and_index(subject_dir):
    dm = SubjectDataModule(subject_dir, "dog", resolution=32, crop="random", flip_p=0.5)
    ds = dm.dataset()
    a, b = ds[7], ds[7]
    assert torch.equal(a["pixels"], b["pixels"]) and a["caption"] == b["caption"] and a["sample_id"] == 7
    other = SubjectDataModule(subject_dir, "dog", resolution=32, crop="random", flip_p=0.5, seed=1).dataset()
    assert any(not torch.equal(ds[n]["pixels"], other[n]["pixels"]) for n in range(6))
    # every photo once per round of len(photos) samples (the centre-crop cache key names the photo)
    centre = SubjectDataModule(subject_dir, "dog", resolution=32).dataset()
    for first in (0, 3, 6):
        photos = sorted(centre[n]["cache_key"].split(":")[0] for n in range(first, first + 3))
        assert photos == ["0", "1", "2"]


def test_noise_and_timesteps_are_per_sample():
    n1, t1 = noise_and_timesteps(0, [3, 4], (2, 2, 2), 1000, "cpu")
    n2, t2 = noise_and_timesteps(0, [4], (2, 2, 2), 1000, "cpu")
    assert torch.equal(n1[1], n2[0]) and t1[1] == t2[0] and not torch.equal(n1[0], n1[1])
