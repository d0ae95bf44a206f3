"""What the synthetic sets are painted with: the class looks (shape, texture, colour pair), the
palette, and the drawing primitives both scene kinds share (``synth.py`` flat, ``synth_natural.py``)."""

import numpy as np

CLASS_NAMES = ("anger", "disgust", "fear", "joy", "sadness", "surprise")


# One palette for everything: backgrounds, objects and distractors all draw from it.
PALETTE = np.array(
    [
        [200, 60, 50],
        [230, 180, 40],
        [60, 150, 70],
        [50, 90, 190],
        [150, 70, 170],
        [240, 240, 230],
        [30, 30, 40],
        [120, 120, 110],
        [40, 170, 180],
        [230, 120, 150],
    ],
    dtype=np.float32,
)


DARK = (6, 3, 4, 2, 0, 7)  # palette entries used as the texture's dark colour


LIGHT = (5, 1, 9, 8, 2, 0)  # ... and as its light colour; class i uses (DARK[i], LIGHT[i])


SHAPES = ("disc", "square", "diamond", "triangle", "ellipse", "hexagon")


DISTRACTOR_TEXTURES = ("vertical", "grid", "zigzag")  # no class uses these


# class -> (shape, texture); every pair is unique in both parts.
CLASS_LOOK = {
    "anger": ("triangle", "diagonal"),
    "disgust": ("hexagon", "dots"),
    "fear": ("disc", "rings"),
    "joy": ("square", "checks"),
    "sadness": ("ellipse", "horizontal"),
    "surprise": ("diamond", "pinwheel"),
}


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "disc":
        return u**2 + v**2 <= 1.0
    if shape == "ellipse":
        return u**2 + (v / 0.62) ** 2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.86) & (np.abs(v) <= 0.86)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # apex at the top, base near the bottom (v grows downwards)
        return (v <= 0.8) & (v >= -1.0 + 1.8 * np.abs(u))
    if shape == "hexagon":  # regular, flat top and bottom
        return (np.abs(v) <= 0.87) & (np.sqrt(3) * np.abs(u) + np.abs(v) <= np.sqrt(3))
    raise ValueError(shape)


def texture(kind: str, u: np.ndarray, v: np.ndarray, phase: float, angle: float) -> np.ndarray:
    """A 0/1 pattern; ``angle`` (radians) jitters the orientation a little."""
    c, s = np.cos(angle), np.sin(angle)
    ru, rv = c * u - s * v, s * u + c * v
    freq = 3.0  # stripes per half-object: coarse enough to survive a 7× downsampling
    if kind == "diagonal":
        return np.sin(np.pi * freq * (ru + rv) / np.sqrt(2) + phase) > 0
    if kind == "horizontal":
        return np.sin(np.pi * freq * rv + phase) > 0
    if kind == "checks":
        return (np.sin(np.pi * 2.2 * ru + phase) > 0) ^ (np.sin(np.pi * 2.2 * rv + phase) > 0)
    if kind == "rings":
        return np.sin(np.pi * freq * np.sqrt(u**2 + v**2) + phase) > 0
    if kind == "dots":
        gu, gv = np.mod(ru * 2.5 + phase, 1.0) - 0.5, np.mod(rv * 2.5 + phase, 1.0) - 0.5
        return gu**2 + gv**2 <= 0.28**2
    if kind == "vertical":
        return np.sin(np.pi * freq * ru + phase) > 0
    if kind == "grid":
        return (np.abs(np.sin(np.pi * 2.2 * ru + phase)) > 0.8) | (np.abs(np.sin(np.pi * 2.2 * rv + phase)) > 0.8)
    if kind == "zigzag":
        return np.sin(np.pi * freq * rv + 1.5 * np.abs(np.sin(np.pi * 2 * ru)) + phase) > 0
    if kind == "pinwheel":
        return np.sin(6 * np.arctan2(v, u) + angle * 3 + phase) > 0
    raise ValueError(kind)


def local_grid(size: int, box: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    x0, y0, side = box
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side * 2 - 1
    v, u = np.meshgrid(coords, coords, indexing="ij")
    return u, v, (slice(y0, y0 + side), slice(x0, x0 + side))


def overlaps(a: tuple[int, int, int], b: tuple[int, int, int], margin: int) -> bool:
    ax, ay, aside = a
    bx, by, bside = b
    return not (
        ax + aside + margin <= bx or bx + bside + margin <= ax or ay + aside + margin <= by or by + bside + margin <= ay
    )


def jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 18.0) -> np.ndarray:
    return np.clip(colour + rng.normal(0, amount, 3), 0, 255)
