"""Text-grounded subject masks (paper Sec. 3.2/3.3: "Grounding SAM with the subject name").

Grounding DINO finds boxes for the class name; SAM segments the chosen box. Both run through transformers
(`GroundingDinoForObjectDetection`, `SamModel`), so no torchvision is needed. Model ids are configurable: the
defaults are the small public checkpoints; the paper used SAM ViT-H (`facebook/sam-vit-huge`). An original
segment-anything checkpoint (`sam_vit_h_4b8939.pth`) works too through the optional `segment-anything` package
(`pip install 'hifilight[sam]'`, which needs torchvision); torch loads it with `weights_only=True`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel, SamProcessor

from hifilight.errors import HifiError
from hifilight.models.loading import resolve_source

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the original image


@dataclass(frozen=True)
class GroundedSamSettings:
    """Grounded SAM options.

    Args:
        detector: Grounding DINO hub id or local folder.
        segmenter: SAM hub id or local folder (the paper used facebook/sam-vit-huge), or an original
            segment-anything checkpoint file (sam_vit_h_4b8939.pth; needs the `sam` extra).
        box_threshold: minimum box score.
        text_threshold: minimum score of the class-name tokens.
        box_choice: "best" = the highest-scoring box; "union" = the box enclosing all boxes above the threshold.
        fallback: what a photo gets when nothing is found: "grabcut" (centre prior) or "full" (whole image).
    """

    detector: str = "IDEA-Research/grounding-dino-tiny"
    segmenter: str = "facebook/sam-vit-base"
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    box_choice: Literal["best", "union"] = "best"
    fallback: Literal["grabcut", "full"] = "grabcut"


def _load(cls, source: str, flag: str, offline: bool = False):
    path, local = resolve_source(source, flag)
    try:
        return cls.from_pretrained(path, local_files_only=local or offline)
    except OSError as err:
        raise HifiError(
            f"{flag} {source}: segmentation weights could not be loaded ({str(err).splitlines()[0]}); download them "
            "and pass the folder, or choose the grabcut masks (no weights) or mask files"
        ) from err


class TransformersSam:
    """SAM through transformers: one box prompt -> one mask."""

    def __init__(self, model: SamModel, processor: SamProcessor):
        self.model, self.processor = model.eval(), processor

    @torch.no_grad()
    def __call__(self, image: Image.Image, box: Box) -> np.ndarray:
        inputs = self.processor(images=image, input_boxes=[[list(box)]], return_tensors="pt")
        outputs = self.model(
            pixel_values=inputs["pixel_values"].to(self.model.device),
            input_boxes=inputs["input_boxes"].to(self.model.device),
            multimask_output=False,
        )
        masks = self.processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )
        return masks[0][0, 0].numpy().astype(bool)


SAM_CHECKPOINT_TYPES = ("vit_h", "vit_l", "vit_b")  # segment-anything registry keys


def checkpoint_model_type(path: Path) -> str:
    """sam_vit_h_4b8939.pth -> vit_h (the segment-anything registry key)."""
    for key in SAM_CHECKPOINT_TYPES:
        if key in Path(path).name:
            return key
    raise HifiError(
        f"--segmentation.segmenter {path}: cannot tell the SAM size from the name; keep vit_h/vit_l/vit_b in it"
    )


class OriginalSam:
    """SAM through the original `segment-anything` package (optional extra)."""

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        try:
            from segment_anything import SamPredictor, sam_model_registry
        except ImportError as err:
            raise HifiError(
                f"--segmentation.segmenter {checkpoint}: the segment-anything package is not installed; "
                "pip install 'hifilight[sam]' (it needs torchvision, see docs/fit.md), or pass a transformers SAM id"
            ) from err
        if not Path(checkpoint).is_file():
            raise HifiError(f"--segmentation.segmenter {checkpoint}: no such checkpoint file")
        model = sam_model_registry[checkpoint_model_type(checkpoint)](checkpoint=str(checkpoint)).to(device)
        self.predictor = SamPredictor(model)

    def __call__(self, image: Image.Image, box: Box) -> np.ndarray:
        self.predictor.set_image(np.asarray(image.convert("RGB")))
        masks, _, _ = self.predictor.predict(box=np.array(box), multimask_output=False)
        return masks[0].astype(bool)


def load_segmenter(source: str, device: str = "cpu", offline: bool = False):
    if source.endswith(".pth"):
        return OriginalSam(Path(source).expanduser(), device)
    flag = "--segmentation.segmenter"
    return TransformersSam(
        _load(SamModel, source, flag, offline).to(device), _load(SamProcessor, source, flag, offline)
    )


def detector_text(class_name: str) -> str:
    """Grounding DINO expects lower-case phrases ending with a period."""
    return class_name.strip().lower().rstrip(".") + "."


class GroundedSam:
    """Detector + segmenter with their processors; `__call__(image, class_name)` returns a mask or None."""

    def __init__(self, detector, detector_processor, segmenter, settings: GroundedSamSettings):
        self.detector, self.detector_processor = detector.eval(), detector_processor
        self.segmenter = segmenter  # (image, box) -> bool mask: TransformersSam or OriginalSam
        self.settings = settings

    @classmethod
    def from_pretrained(
        cls, settings: GroundedSamSettings = GroundedSamSettings(), device: str = "cpu", offline: bool = False
    ):
        """Load both models; `offline` only looks in local folders and the hub cache (no download)."""
        flag = "--segmentation.detector"
        detector = _load(GroundingDinoForObjectDetection, settings.detector, flag, offline).to(device)
        processor = _load(AutoProcessor, settings.detector, flag, offline)
        return cls(detector, processor, load_segmenter(settings.segmenter, device, offline), settings)

    @torch.no_grad()
    def detect(self, image: Image.Image, class_name: str) -> tuple[list[Box], list[float]]:
        """Boxes above the thresholds for the class name, best first."""
        inputs = self.detector_processor(images=image, text=detector_text(class_name), return_tensors="pt")
        outputs = self.detector(**inputs.to(self.detector.device))
        result = self.detector_processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.settings.box_threshold,
            text_threshold=self.settings.text_threshold,
            target_sizes=[(image.height, image.width)],
        )[0]
        order = torch.argsort(result["scores"], descending=True)
        return [tuple(result["boxes"][i].tolist()) for i in order], [float(result["scores"][i]) for i in order]

    def choose(self, boxes: list[Box]) -> Box:
        if self.settings.box_choice == "union":
            arr = np.array(boxes)
            return (arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max())
        return boxes[0]

    def segment(self, image: Image.Image, box: Box) -> np.ndarray:
        """The segmenter's mask (H, W) bool for one box prompt."""
        return self.segmenter(image, box)

    def __call__(self, image: Image.Image, class_name: str) -> tuple[np.ndarray | None, str]:
        boxes, _ = self.detect(image, class_name)
        if not boxes:
            return None, f"no {class_name!r} box above --segmentation.box_threshold {self.settings.box_threshold}"
        mask = self.segment(image, self.choose(boxes))
        return (mask, "") if mask.any() else (None, "SAM returned an empty mask")


class GroundedSamMaskProvider:
    """`grounded_sam`: Grounding DINO box for the class name, segmented by SAM; per-photo fallback with a warning."""

    name = "grounded_sam"

    def __init__(self, model: GroundedSam, class_name: str):
        self.model, self.class_name = model, class_name

    def __call__(self, image_path: Path, image: Image.Image) -> torch.Tensor:
        mask, why = self.model(image.convert("RGB"), self.class_name)
        if mask is None:
            fallback = self.model.settings.fallback
            warnings.warn(f"{Path(image_path).name}: {why}; using {fallback} for this photo", stacklevel=2)
            if fallback == "full":
                return torch.ones(1, image.height, image.width)
            from hifilight.perception.grabcut import GrabCutMaskProvider

            return GrabCutMaskProvider()(image_path, image)
        return torch.from_numpy(mask.astype(np.float32))[None]
