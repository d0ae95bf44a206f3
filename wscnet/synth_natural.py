"""The harder scene of the synthetic set (``SynthConfig(scene="natural")``, ``synth --scene natural``).

Closer to EmotionROI than the flat scene, and harder for a network trained from scratch:

- the background is a procedural photograph: a sky and a ground colour split at a random horizon,
  both shaded by coloured 1/f noise (structure at every scale), a few soft dark masses (trees,
  rocks) and grain; it is as contrasted as the objects pasted on it;
- the class object is the class texture and colour pair of ``paint.CLASS_LOOK`` on an irregular
  blob (not the class shape), 20-45 % of the side, anywhere, shaded like the background and
  pasted with a soft edge; its shape says nothing about the class;
- 1-3 distractors of the same sizes, blobs and softness; each is a texture no class uses or, one
  time in three, a class texture in a colour pair that is not that class's, so neither texture
  nor colour alone gives the class;
- the ground truth is soft: the paste's opacity as 0-255.
"""

import numpy as np
from PIL import Image

from . import synth_paint as paint

# Natural colours (RGB) of the two halves of a background.
SKY = np.array([[120, 160, 210], [170, 180, 190], [220, 170, 120], [90, 110, 150]], np.float32)
GROUND = np.array([[70, 110, 50], [120, 95, 60], [90, 90, 85], [150, 140, 100], [40, 70, 45]], np.float32)
SIZE_RANGE = (0.20, 0.45)  # object side over image side
CLASS_TEXTURE_DISTRACTOR = 1 / 3  # share of distractors that wear a class texture in wrong colours


def noise_field(rng: np.random.Generator, size: int, octaves: int = 5) -> np.ndarray:
    """1/f-like noise in [0, 1]: octaves of upsampled random grids, amplitude halving per octave."""
    total = np.zeros((size, size), np.float32)
    for octave in range(octaves):
        cells = 2 ** (octave + 1) + 1
        grid = rng.random((cells, cells)).astype(np.float32) * 255
        up = Image.fromarray(grid.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        total += np.asarray(up, np.float32) / 255 * 0.5**octave
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def natural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A photograph-like H×W×3 float image: sky over ground, shaded by noise, with soft masses."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    horizon = rng.uniform(0.25, 0.7) * size + (noise_field(rng, size, 2)[0] - 0.5) * 0.2 * size
    ground_share = np.clip((yy - horizon[None, :]) / (0.04 * size) + 0.5, 0, 1)[..., None]
    sky = paint.jitter(rng, SKY[rng.integers(len(SKY))], 20)
    ground = paint.jitter(rng, GROUND[rng.integers(len(GROUND))], 20)
    img = (1 - ground_share) * sky + ground_share * ground
    shade = np.stack([noise_field(rng, size) for _ in range(3)], axis=-1)
    img = img * (0.55 + 0.9 * shade.mean(-1, keepdims=True)) + (shade - 0.5) * 60
    for _ in range(int(rng.integers(2, 6))):  # dark soft masses: trees, rocks, shadows
        cx, cy, r = rng.uniform(0, size), rng.uniform(0.3, 1.0) * size, rng.uniform(0.05, 0.2) * size
        alpha = np.clip(1.5 - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r, 0, 1) * rng.uniform(0.3, 0.7)
        img = img * (1 - alpha[..., None]) + np.array([30, 35, 25], np.float32) * alpha[..., None]
    return img + rng.normal(0, 5.0, img.shape).astype(np.float32)


def blob_alpha(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Opacity in [0, 1] of an irregular blob on the local grid: 1 inside, a soft rim, 0 outside."""
    theta, rho = np.arctan2(v, u), np.sqrt(u**2 + v**2)
    radius = np.full_like(rho, 0.78)
    for harmonic in (2, 3, 5):
        radius += rng.uniform(0, 0.08) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    return np.clip((radius - rho) / 0.18 + 0.5, 0.0, 1.0)


def _paste(img: np.ndarray, rng: np.random.Generator, box, texture: str, dark, light) -> np.ndarray:
    """Paste a shaded two-colour texture on a blob into img; returns the blob's opacity, H×W."""
    u, v, where = paint.local_grid(img.shape[0], box)
    alpha = blob_alpha(rng, u, v) * rng.uniform(0.85, 1.0)
    pattern = paint.texture(texture, u, v, phase=rng.uniform(0, 2 * np.pi), angle=rng.uniform(-0.3, 0.3))
    if np.abs(dark - light).sum() < 150:  # keep the texture visible
        light = np.clip(dark + 160, 0, 255)
    shade = 0.8 + 0.4 * noise_field(rng, box[2], 3)[..., None]
    patch = np.where(pattern[..., None], light, dark) * shade
    img[where] = img[where] * (1 - alpha[..., None]) + patch * alpha[..., None]
    full = np.zeros(img.shape[:2], np.float32)
    full[where] = alpha
    return full


def _distractor_look(rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
    """A texture no class uses in any two colours, or a class texture in another colour pair."""
    pair = tuple(int(i) for i in rng.choice(len(paint.PALETTE), size=2, replace=False))
    if rng.random() < CLASS_TEXTURE_DISTRACTOR:
        label = int(rng.integers(len(paint.CLASS_NAMES)))
        while pair == (paint.DARK[label], paint.LIGHT[label]):
            pair = tuple(int(i) for i in rng.choice(len(paint.PALETTE), size=2, replace=False))
        texture = paint.CLASS_LOOK[paint.CLASS_NAMES[label]][1]
    else:
        texture = paint.DISTRACTOR_TEXTURES[rng.integers(len(paint.DISTRACTOR_TEXTURES))]
    return texture, paint.jitter(rng, paint.PALETTE[pair[0]], 25), paint.jitter(rng, paint.PALETTE[pair[1]], 25)


def _random_box(rng: np.random.Generator, size: int) -> tuple[int, int, int]:
    side = int(rng.uniform(*SIZE_RANGE) * size)
    return int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1)), side


def render_natural(seed: int, label: int, number: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, H×W uint8 soft ground truth 0-255) of one natural-scene sample."""
    rng = np.random.default_rng([seed, label, number, 7])
    img = natural_background(rng, size)
    target = _random_box(rng, size)
    texture = paint.CLASS_LOOK[paint.CLASS_NAMES[label]][1]
    dark = paint.jitter(rng, paint.PALETTE[paint.DARK[label]], 25)
    light = paint.jitter(rng, paint.PALETTE[paint.LIGHT[label]], 25)
    gt = _paste(img, rng, target, texture, dark, light)
    placed = [target]
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(30):
            box = _random_box(rng, size)
            if not any(paint.overlaps(box, other, margin=size // 64) for other in placed):
                _paste(img, rng, box, *_distractor_look(rng))
                placed.append(box)
                break
    return np.clip(img, 0, 255).astype(np.uint8), np.round(gt * 255).astype(np.uint8)
