"""DDP with 2 CPU processes (gloo) equals one process with the combined batch: same draws, same updates."""

import lightning as L
import torch
from conftest import EXAMPLE_SUBJECT
from lightning.pytorch.strategies import DDPStrategy

from hifilight.data import SubjectDataModule
from hifilight.training import SubjectEmbeddingModule
from hifilight.training.dreambooth import DreamBoothModule


def _fit(module, devices: int, batch: int, steps: int, root):
    dm = SubjectDataModule(EXAMPLE_SUBJECT, "dog", masks="none", resolution=32, batch_size=batch, flip_p=0.5)
    # the subject module trains c_s in stage 1 and c_work after it: each stage leaves one parameter unused
    strategy = DDPStrategy(start_method="spawn", find_unused_parameters=True) if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=steps,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(module, dm)
    return module


def test_subject_embedding_two_processes_equal_one_with_double_batch(tmp_path):
    kwargs = {"stage1_steps": 3, "stepwise_steps": 1, "stepwise_num_steps": 2, "learning_rate": 0.05}
    one = _fit(SubjectEmbeddingModule(**kwargs), 1, 2, 5, tmp_path / "one")
    two = _fit(SubjectEmbeddingModule(**kwargs), 2, 1, 5, tmp_path / "two")
    start = SubjectEmbeddingModule(**kwargs).c_s
    assert not torch.allclose(one.c_s, start)
    assert torch.allclose(one.c_s, two.c_s, atol=1e-5)
    assert torch.allclose(one.c_s_t, two.c_s_t, atol=1e-5)


def test_dreambooth_two_processes_equal_one_with_double_batch(tmp_path):
    kwargs = {"learning_rate": 1e-3, "max_steps": 2, "prior_preservation": False}
    start = torch.nn.utils.parameters_to_vector(DreamBoothModule(**kwargs).unet.parameters())
    one = _fit(DreamBoothModule(**kwargs), 1, 2, 2, tmp_path / "one")
    two = _fit(DreamBoothModule(**kwargs), 2, 1, 2, tmp_path / "two")
    a, b = (torch.nn.utils.parameters_to_vector(m.unet.parameters()) for m in (one, two))
    # Adam's first steps are ~lr * sign(grad): entries whose gradient is ~0 may take either sign when the batch is
    # split (float summation order), so compare the updates as a whole. Measured: 0.0055 relative difference here,
    # and 0.0057 between batch 2 and batch 1 x 2 accumulated steps in one process (the same float-order effect).
    assert float((a - b).norm() / (a - start).norm()) < 1e-2
