"""ToyWorld scenes: one object (shape x colour x pattern) on a named background, drawn with numpy, seeded, with the
exact subject mask and a caption ("a red striped star on the snow").

Everything is a pure function of the `Scene` (its seed drives the background's texture), so a scene renders the
same image and mask every time. Object pixels are exactly the mask: no anti-aliasing, so masks match drawings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (240, 210, 40),
          "purple": (140, 50, 180), "orange": (245, 130, 30), "white": (245, 245, 245),
          "black": (25, 25, 25)}  # fmt: skip
SHAPES = ("circle", "square", "star", "ring", "heart", "triangle")
PATTERNS = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS = {  # name -> how a caption says it
    "beach": "on the beach", "snow": "in the snow", "grass": "on the grass", "night": "under a night sky",
    "brick": "in front of a brick wall", "wood": "on a wooden floor", "fabric": "on top of pink fabric",
    "water": "on the water",
}  # fmt: skip


@dataclass(frozen=True)
class ToyObject:
    shape: str
    color: str
    pattern: str = "plain"
    pattern_color: str = "white"  # second colour of a striped/dotted/checkered object

    def __post_init__(self):
        if self.shape not in SHAPES or self.color not in COLORS or self.pattern not in PATTERNS:
            raise ValueError(f"unknown object {self}")
        if self.pattern_color not in COLORS:
            raise ValueError(f"unknown pattern colour {self.pattern_color}")

    @property
    def words(self) -> str:
        """ "red striped star"; a two-coloured pattern names both colours ("red star with yellow stripes")."""
        if self.pattern == "plain":
            return f"{self.color} {self.shape}"
        noun = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}[self.pattern]
        return f"{self.color} {self.shape} with {self.pattern_color} {noun}"


@dataclass(frozen=True)
class Scene:
    obj: ToyObject
    background: str
    x: float = 0.0  # object centre, in [-1, 1] image coordinates (x right, y down)
    y: float = 0.0
    scale: float = 0.4  # object radius as a fraction of the half-size
    angle: float = 0.0  # radians
    seed: int = 0

    @property
    def caption(self) -> str:
        return f"a {self.obj.words} {BACKGROUNDS[self.background]}"


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size * 2 - 1
    return np.meshgrid(c, c)  # xx, yy


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the object's unit frame (radius ~1)."""
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "star":
        return r <= 0.45 + 0.55 * ((np.cos(5 * (theta + np.pi / 2)) + 1) / 2) ** 2
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    if shape == "triangle":
        return (v <= 0.75) & (v >= -1.0 + 1.85 * np.abs(u)) & (np.abs(u) <= 0.95)
    raise ValueError(shape)


def pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the second colour goes, in the object's frame (so patterns turn with the object). Every pattern covers
    a minority of the object (stripes ~1/3, dots, every other check), so its main colour is well defined."""
    if pattern == "plain":
        return np.zeros_like(u, dtype=bool)
    if pattern == "striped":
        return np.sin(u * 9) > 0.5
    if pattern == "dotted":
        return (np.mod(u * 2.5, 1) - 0.5) ** 2 + (np.mod(v * 2.5, 1) - 0.5) ** 2 < 0.06
    if pattern == "checkered":
        return (np.floor(u * 2.5).astype(int) % 2 == 0) & (np.floor(v * 2.5).astype(int) % 2 == 0)
    raise ValueError(pattern)


def background(name: str, size: int, seed: int) -> np.ndarray:
    """(size, size, 3) float RGB in [0, 255] for a named background, textured from `seed`."""
    rng = np.random.default_rng(seed)
    xx, yy = _grid(size)
    img = np.zeros((size, size, 3))
    noise = rng.normal(0, 6, (size, size, 1))
    if name == "beach":
        sea = yy < -0.2 + 0.05 * np.sin(xx * 6 + rng.uniform(0, 6))
        img[:] = (230, 205, 150)
        img[sea] = (70, 150, 210)
    elif name == "snow":
        img[:] = (235, 240, 250)
        img[rng.random((size, size)) < 0.03] = (200, 215, 240)
    elif name == "grass":
        img[:] = (70, 150, 60)
        img[np.sin(xx * 40 + rng.uniform(0, 6)) > 0.6] = (50, 120, 45)
    elif name == "night":
        img[:] = (15, 20, 60)
        img[rng.random((size, size)) < 0.02] = (250, 250, 220)
        noise *= 0.3
    elif name == "brick":
        img[:] = (160, 70, 50)
        row = np.floor((yy + 1) * 5)
        mortar = (np.mod((yy + 1) * 5, 1) < 0.12) | (np.mod((xx + 1) * 3 + 0.5 * (row % 2), 1) < 0.06)
        img[mortar] = (200, 195, 185)
    elif name == "wood":
        img[:] = (150, 100, 55)
        img[np.mod((xx + 1) * 4 + rng.uniform(0, 1), 1) < 0.05] = (100, 65, 35)
        img += 12 * np.sin(yy * 30 + xx * 3)[..., None]
    elif name == "fabric":
        img[:] = (240, 160, 200)
        img += 10 * (np.sin(xx * 60) * np.sin(yy * 60))[..., None]
    elif name == "water":
        img[:] = (40, 110, 190)
        img[np.sin(yy * 25 + 2 * np.sin(xx * 5 + rng.uniform(0, 6))) > 0.85] = (150, 200, 240)
    else:
        raise ValueError(f"unknown background {name!r}; one of {', '.join(BACKGROUNDS)}")
    return np.clip(img + noise, 0, 255)


def render(scene: Scene, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (size, size, 3), mask bool (size, size)) of a scene."""
    img = background(scene.background, size, scene.seed)
    xx, yy = _grid(size)
    dx, dy = (xx - scene.x) / scene.scale, (yy - scene.y) / scene.scale
    c, s = np.cos(-scene.angle), np.sin(-scene.angle)
    u, v = c * dx - s * dy, s * dx + c * dy
    mask = shape_mask(scene.obj.shape, u, v)
    second = mask & pattern_mask(scene.obj.pattern, u, v)
    img[mask] = COLORS[scene.obj.color]
    img[second] = COLORS[scene.obj.pattern_color]
    return img.round().astype(np.uint8), mask


# Object radius as a fraction of the half-size, per world: (share, low, high) ranges, drawn by share. v1 (the
# committed ToySD's world): 0.3-0.5, objects 19-32 px across at 64 px (5-8 latent cells). v2 (ToySD v2): most objects
# fill 45-70% of the frame width as DreamBench's subjects do (7-11 latent cells), a fifth stay small. A choice of
# ours; `use_sizes` picks the world's sizes for every render in the process (`hifilight.toyworld.world`).
SIZES = {"v1": ((1.0, 0.3, 0.5),), "v2": ((0.8, 0.45, 0.7), (0.2, 0.3, 0.45))}
_sizes = ["v1"]


def use_sizes(name: str) -> None:
    """Every later `random_scene` draws object sizes from `SIZES[name]`."""
    if name not in SIZES:
        raise ValueError(f"unknown ToyWorld sizes {name!r}; one of {', '.join(SIZES)}")
    _sizes[0] = name


def current_sizes() -> str:
    return _sizes[0]


def draw_scale(rng: np.random.Generator, ranges: tuple[tuple[float, float, float], ...]) -> float:
    """An object radius from `ranges` ((share, low, high), ...); a single range draws one number, as v1 always did."""
    if len(ranges) == 1:
        return float(rng.uniform(ranges[0][1], ranges[0][2]))
    u, start = rng.random(), 0.0
    for share, low, high in ranges:
        start += share
        if u < start:
            return float(rng.uniform(low, high))
    return float(rng.uniform(ranges[-1][1], ranges[-1][2]))


def random_scene(rng: np.random.Generator, obj: ToyObject, background_name: str | None = None) -> Scene:
    """A random pose (kept inside the frame) and texture seed for `obj`, its size from the current world's."""
    scale = draw_scale(rng, SIZES[_sizes[0]])
    x, y = rng.uniform(-0.9 + scale, 0.9 - scale, 2)
    name = background_name or str(rng.choice(list(BACKGROUNDS)))
    return Scene(
        obj, name, float(x), float(y), float(scale), float(rng.uniform(0, 2 * np.pi)), int(rng.integers(2**31))
    )
