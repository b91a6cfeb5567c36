"""Subject images, their masks, and the Lightning data module that serves them."""

from hifilight.data.datamodule import SubjectDataModule
from hifilight.data.masks import MASK_PROVIDERS, FilesMaskProvider, FullImageMaskProvider, MaskProvider

__all__ = [
    "MASK_PROVIDERS",
    "FilesMaskProvider",
    "FullImageMaskProvider",
    "MaskProvider",
    "SubjectDataModule",
]
