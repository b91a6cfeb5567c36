"""Stage-1 subject-embedding learning (HiFi Tuner Sec. 3.2, Eq. 5-6)."""

from hifilight.masking import latent_mask
from hifilight.training.losses import embedding_regularizer, masked_mse
from hifilight.training.subject_module import SubjectEmbeddingModule

__all__ = ["SubjectEmbeddingModule", "embedding_regularizer", "latent_mask", "masked_mse"]
