"""Mask alignment for reference-guided generation: T_theta of Eq. (8), optimised with Eq. (9) + Appendix B.

T_theta = S(theta_1) R(theta_2) Tr(theta_3, theta_4) acts on point coordinates p (normalised to [-1, 1] over the
square image, x right, y down): p' = s R (p + t). It is fitted so that T_theta(M_r) matches M_g with
- Eq. (9): the L1 distance between the warped reference mask and the generated one (bilinear warp, so it is
  differentiable in theta), and
- Appendix B (Algorithm 4): for each transformed reference-mask point, the distance to the nearest generated-mask
  point. The appendix loops over all point pairs (O(N*M) per step); here both point sets are subsampled to at most
  `max_points` and the distances come from one `torch.cdist`.

Choices the paper leaves open (each a setting): theta_1 is parametrised as exp(log s) so the scale stays positive;
the point term is symmetric by default (the appendix's one-directional term alone is minimised by shrinking the
reference mask onto a single generated point); the fit starts from the centroid/area match of the two masks, so
masks that do not overlap at the start still align, and can try several start rotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AlignSettings:
    """Optimisation of T_theta.

    Args:
        steps: Adam steps per start rotation.
        learning_rate: Adam learning rate on (log scale, angle, tx, ty).
        work_size: both masks are resized to work_size x work_size for the fit.
        l1_weight: weight of the Eq. (9) L1 mask term (mean over pixels).
        point_weight: weight of the Appendix B nearest-point term (normalised coordinates).
        symmetric: add the generated->reference nearest-point term too (prevents collapse to a point).
        point_anneal: decay the point weight linearly to 0 over the steps: the point term pulls far-apart masks
            together, the L1 term then fits pixel-accurately (the nearest-point distance of two pixel grids at
            different scales is not minimal at the true transform).
        max_points: subsample each mask to at most this many points (evenly spaced) for the point term.
        start_angles: start rotations in degrees; the best final loss wins.
        init: "centroid" (start with matched areas and centroids) or "identity" (theta = 0, as in Appendix B).
    """

    steps: int = 200
    learning_rate: float = 0.03
    work_size: int = 64
    l1_weight: float = 1.0
    point_weight: float = 1.0
    symmetric: bool = True
    point_anneal: bool = True
    max_points: int = 1024
    start_angles: tuple[float, ...] = (0.0,)
    init: str = "centroid"

    def __post_init__(self):
        if self.init not in ("centroid", "identity"):
            raise ValueError(f"--reference.align.init must be 'centroid' or 'identity', got {self.init!r}")
        if self.steps < 0 or self.work_size < 4 or self.max_points < 1 or not self.start_angles:
            raise ValueError(
                "--reference.align: steps must be >= 0, work_size >= 4, max_points >= 1, start_angles non-empty"
            )


@dataclass(frozen=True)
class Alignment:
    """The fitted transform: p' = scale * R(angle) (p + (tx, ty)) in normalised coordinates."""

    scale: float
    angle: float  # radians
    tx: float
    ty: float
    loss: float
    iou: float  # IoU of the warped reference mask and the generated mask at work size

    def as_dict(self) -> dict:
        return {
            "scale": self.scale,
            "angle_deg": math.degrees(self.angle),
            "tx": self.tx,
            "ty": self.ty,
            "loss": self.loss,
            "iou": self.iou,
        }


def _grid_theta(log_s: Tensor, angle: Tensor, t: Tensor) -> Tensor:
    """affine_grid's output->input map for p' = s R (p + t): p = R^T p' / s - t, as (1, 2, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    inv = torch.stack([torch.stack([c, s]), torch.stack([-s, c])]) / torch.exp(log_s)
    return torch.cat([inv, -t.view(2, 1)], dim=1)[None]


def warp(image: Tensor, log_s: Tensor, angle: Tensor, t: Tensor, padding: str = "zeros") -> Tensor:
    """T_theta(image) for (B, C, H, W) square images (bilinear)."""
    theta = _grid_theta(log_s, angle, t).to(image.dtype).expand(image.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def apply(image: Tensor, alignment: Alignment, padding: str = "zeros") -> Tensor:
    """Apply a fitted alignment to an image or mask (B, C, H, W)."""
    scalar = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    t = torch.tensor([alignment.tx, alignment.ty], dtype=torch.float32)
    return warp(image.float(), scalar(math.log(alignment.scale)), scalar(alignment.angle), t, padding)


def mask_points(mask: Tensor, max_points: int) -> Tensor:
    """Normalised (x, y) centres of the mask's pixels (N, 2), evenly subsampled to at most max_points."""
    h, w = mask.shape[-2:]
    ys, xs = torch.nonzero(mask.reshape(h, w) > 0.5, as_tuple=True)
    pts = torch.stack([(2 * xs.float() + 1) / w - 1, (2 * ys.float() + 1) / h - 1], dim=1)
    if len(pts) > max_points:
        pts = pts[torch.linspace(0, len(pts) - 1, max_points).round().long()]
    return pts


def transform_points(points: Tensor, log_s: Tensor, angle: Tensor, t: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    return torch.exp(log_s) * (points + t) @ rot.T


def iou(a: Tensor, b: Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def _work(mask: Tensor, size: int) -> Tensor:
    m = mask.float().reshape(1, 1, *mask.shape[-2:])
    return F.interpolate(m, size=(size, size), mode="area")


def align_masks(m_r: Tensor, m_g: Tensor, settings: AlignSettings = AlignSettings()) -> Alignment:
    """Fit T_theta so that T_theta(m_r) matches m_g (both (H, W) or (1, H, W), any sizes, square, non-empty)."""
    work_r, work_g = _work(m_r, settings.work_size), _work(m_g, settings.work_size)
    p_r, p_g = mask_points(work_r, settings.max_points), mask_points(work_g, settings.max_points)
    if len(p_r) == 0 or len(p_g) == 0:
        raise ValueError("align_masks: both masks must contain subject pixels")
    all_r, all_g = mask_points(work_r, 10**9), mask_points(work_g, 10**9)
    centroid = settings.init == "centroid"
    scale = math.sqrt(len(all_g) / len(all_r)) if centroid else 1.0  # area match, centroids matched per angle
    best = None
    for degrees in settings.start_angles:
        angle = math.radians(degrees)
        rot_inv = torch.tensor([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
        t0 = rot_inv @ all_g.mean(0) / scale - all_r.mean(0) if centroid else torch.zeros(2)  # s R (c_r + t0) = c_g
        params = [torch.tensor(math.log(scale)), torch.tensor(angle), t0]
        result = _fit(params, work_r, work_g, p_r, p_g, settings)
        if best is None or result.loss < best.loss:
            best = result
    return best


def _loss(params, work_r, work_g, p_r, p_g, settings: AlignSettings, point_weight: float) -> Tensor:
    log_s, angle, t = params
    loss = settings.l1_weight * (warp(work_r, log_s, angle, t) - work_g).abs().mean()
    if point_weight:
        dist = torch.cdist(transform_points(p_r, log_s, angle, t), p_g)
        points = dist.min(dim=1).values.mean()
        if settings.symmetric:
            points = (points + dist.min(dim=0).values.mean()) / 2
        loss = loss + point_weight * points
    return loss


def _fit(params, work_r, work_g, p_r, p_g, settings: AlignSettings) -> Alignment:
    params = [p.clone().float().requires_grad_(True) for p in params]
    optimizer = torch.optim.Adam(params, lr=settings.learning_rate)
    with torch.enable_grad():
        for i in range(settings.steps):
            weight = settings.point_weight * ((1 - i / settings.steps) if settings.point_anneal else 1.0)
            loss = _loss(params, work_r, work_g, p_r, p_g, settings, weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        final_weight = 0.0 if settings.point_anneal else settings.point_weight
        loss = float(_loss(params, work_r, work_g, p_r, p_g, settings, final_weight))
        log_s, angle, t = (p.detach() for p in params)
        warped = warp(work_r, log_s, angle, t)
    return Alignment(float(torch.exp(log_s)), float(angle), float(t[0]), float(t[1]), loss, iou(warped, work_g))
