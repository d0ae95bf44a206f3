"""A synthetic EmotionROI-layout set whose class lives only in one local region.

Each image is a cluttered background, one class object and 1-3 distractors:

- the class object (25-40 % of the side, anywhere) is a class-specific shape filled with a
  class-specific two-colour texture in a class-specific colour pair; all its colours also occur
  in the backgrounds and distractors of every class, so colour alone is a weak cue, but the
  coloured texture is one a network trained from scratch on a CPU picks up within a few epochs;
- distractors are bright, flat, outlined shapes, the same for every class: salient, but useless;
  with ``distractors="salient"`` they are instead as salient as the target: textured two-colour
  shapes of the object's size, in a texture no class uses (the class shapes and palette, though);
- the ground-truth map (PNG, 0/255) is exactly the class object's shape.

``scene="natural"`` makes a harder set (``synth_natural.py``): procedural photograph-like
backgrounds (coloured 1/f noise with a horizon), the class texture on an irregular blob of 15-45 %
of the side pasted with a soft edge, distractors of the same sizes and softness in textures no
class uses, and a soft ground-truth map (the paste's opacity, 0-255).

Images are deterministic per (seed, class, number), whatever else is generated.
"""

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from wscnet.errors import UserError

from .synth_natural import render_natural
from .synth_paint import CLASS_LOOK, CLASS_NAMES, DARK, DISTRACTOR_TEXTURES, LIGHT, PALETTE, SHAPES  # noqa: F401
from .synth_paint import jitter as _jitter
from .synth_paint import local_grid as _local_grid
from .synth_paint import overlaps as _overlaps
from .synth_paint import shape_mask as _shape_mask
from .synth_paint import texture as _texture

MARKER = "synth.json"
ENTRIES = ("images", "ground_truth", "training_testing_split", MARKER)
FORMAT = "wscnet-synth-emotionroi"


DISTRACTORS = ("plain", "salient")
SCENES = ("flat", "natural")


JPEG_QUALITY = 92


@dataclass(frozen=True)
class SynthConfig:
    """What makes one synthetic set: the same config writes the same files."""

    n_per_class: int = 200
    size: int = 256
    seed: int = 0
    test_fraction: float = 0.2
    distractors: str = "plain"  # one of DISTRACTORS
    scene: str = "flat"  # one of SCENES; "natural" draws salient distractors whatever ``distractors`` says

    def __post_init__(self) -> None:
        if self.n_per_class < 2 or self.size < 32 or not 0.0 < self.test_fraction < 1.0:
            raise UserError("synth needs --n-per-class >= 2, --size >= 32 and 0 < --test-fraction < 1")
        if self.distractors not in DISTRACTORS:
            raise UserError(f"--distractors must be one of {', '.join(DISTRACTORS)}; got {self.distractors!r}")
        if self.scene not in SCENES:
            raise UserError(f"--scene must be one of {', '.join(SCENES)}; got {self.scene!r}")


# --- shapes and textures on a local (u, v) grid in [-1, 1]² ---------------------------------------


# --- image pieces -------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth multi-colour clutter from the shared palette, plus a few lines and grain."""
    coarse = PALETTE[rng.integers(0, len(PALETTE), size=(5, 5))]  # 5×5×3
    img = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC), np.float32
    )
    img = 0.55 * img + 0.45 * img.mean()  # muted: the objects must stand out from it
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(4, 9)):  # soft blobs and thin lines: clutter at many scales
        colour = PALETTE[rng.integers(len(PALETTE))]
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.04, 0.15) * size
        if rng.random() < 0.5:
            alpha = 0.35 * ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)
        else:
            theta = rng.uniform(0, np.pi)
            dist = np.abs((xx - cx) * np.sin(theta) - (yy - cy) * np.cos(theta))
            alpha = 0.45 * (dist <= rng.uniform(1.0, 3.0))
        img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    img += rng.normal(0, 6.0, img.shape).astype(np.float32)
    return img


def _paint_object(img: np.ndarray, rng: np.random.Generator, label: int, box: tuple[int, int, int]) -> np.ndarray:
    """Draw the class object into img; return its H×W boolean mask (the ground truth)."""
    shape, texture = CLASS_LOOK[CLASS_NAMES[label]]
    u, v, where = _local_grid(img.shape[0], box)
    mask = _shape_mask(shape, u, v)
    pattern = _texture(texture, u, v, phase=rng.uniform(0, 2 * np.pi), angle=rng.uniform(-0.15, 0.15))
    dark = _jitter(rng, PALETTE[DARK[label]])
    light = _jitter(rng, PALETTE[LIGHT[label]])
    if np.abs(dark - light).sum() < 150:  # keep the texture visible
        light = np.clip(dark + 160, 0, 255)
    patch = np.where(pattern[..., None], light, dark)
    region = img[where]
    region[mask] = patch[mask]
    full = np.zeros(img.shape[:2], bool)
    full[where] = mask
    return full


def _paint_distractor(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int]) -> None:
    """A bright flat shape with a dark outline: salient, identical in law for every class."""
    u, v, where = _local_grid(img.shape[0], box)
    shape = SHAPES[rng.integers(len(SHAPES))]
    inner = _shape_mask(shape, u / 0.85, v / 0.85)
    outer = _shape_mask(shape, u, v)
    colour = _jitter(rng, PALETTE[rng.integers(len(PALETTE))] * 0.4 + 150)
    region = img[where]
    region[outer & ~inner] = np.array([20, 20, 25], np.float32)
    region[inner] = colour


def _paint_salient_distractor(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int]) -> None:
    """A class-sized shape in a two-colour texture no class uses: as salient as the target."""
    u, v, where = _local_grid(img.shape[0], box)
    mask = _shape_mask(SHAPES[rng.integers(len(SHAPES))], u, v)
    texture = DISTRACTOR_TEXTURES[rng.integers(len(DISTRACTOR_TEXTURES))]
    pattern = _texture(texture, u, v, phase=rng.uniform(0, 2 * np.pi), angle=rng.uniform(-0.15, 0.15))
    dark, light = (_jitter(rng, PALETTE[i]) for i in rng.choice(len(PALETTE), size=2, replace=False))
    if np.abs(dark - light).sum() < 150:
        light = np.clip(dark + 160, 0, 255)
    region = img[where]
    region[mask] = np.where(pattern[..., None], light, dark)[mask]


def render(
    seed: int, label: int, number: int, size: int, distractors: str = "plain", scene: str = "flat"
) -> tuple[np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, H×W uint8 ground truth: 0/255, soft 0-255 for the natural scene) of one sample."""
    if scene == "natural":
        return render_natural(seed, label, number, size)
    if distractors not in DISTRACTORS:
        raise ValueError(f"distractors must be one of {DISTRACTORS}; got {distractors!r}")
    salient = distractors == "salient"
    rng = np.random.default_rng([seed, label, number])
    img = _background(rng, size)
    side = int(rng.uniform(0.25, 0.40) * size)
    obj = (int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1)), side)
    mask = _paint_object(img, rng, label, obj)
    placed = [obj]
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(30):
            dside = int(rng.uniform(*((0.25, 0.40) if salient else (0.12, 0.25))) * size)
            box = (int(rng.integers(0, size - dside + 1)), int(rng.integers(0, size - dside + 1)), dside)
            if not any(_overlaps(box, other, margin=size // 64) for other in placed):
                (_paint_salient_distractor if salient else _paint_distractor)(img, rng, box)
                placed.append(box)
                break
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


# --- writing the set ----------------------------------------------------------------------------


def is_synth_set(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def needs_writing(out: Path, cfg: SynthConfig, overwrite: bool = False) -> bool:
    """False when ``out`` already holds exactly this set (nothing to write); refuses to replace
    another set or to write into a foreign folder unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()) or overwrite:
        return True
    if not is_synth_set(out):
        raise UserError(f"{out}: folder is not empty and is not a synthetic set (use --overwrite to write into it)")
    existing = json.loads((out / MARKER).read_text())
    defaults = asdict(SynthConfig())  # sets written before an option existed used its default
    if {k: existing.get(k, defaults[k]) for k in asdict(cfg)} == asdict(cfg):
        return False
    raise UserError(
        f"{out}: already holds a synthetic set with other settings "
        f"({existing.get('n_per_class')} per class, {existing.get('size')} px, seed "
        f"{existing.get('seed')}); pass --overwrite to replace it"
    )


def _split(cfg: SynthConfig) -> dict[str, list[str]]:
    """Per class, a seeded test_fraction of the numbers is the test split."""
    lines: dict[str, list[str]] = {"training.txt": [], "testing.txt": []}
    n_test = int(round(cfg.test_fraction * cfg.n_per_class))
    for label, name in enumerate(CLASS_NAMES):
        order = np.random.default_rng([cfg.seed, label, 1_000_003]).permutation(cfg.n_per_class)
        test = set(order[:n_test].tolist())
        for i in range(cfg.n_per_class):
            lines["testing.txt" if i in test else "training.txt"].append(f"{name}/{_stem(name, i)}.jpg")
    return lines


def _stem(name: str, number: int) -> str:
    return f"{name}_{number:04d}"


def write_synth_set(
    out: str | Path, cfg: SynthConfig | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write the set into ``out``; a half-written set never replaces a good one, and another set
    is replaced only with ``overwrite`` (the same set already there is left as it is)."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    if not needs_writing(out, cfg, overwrite):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        _write_all(staging, cfg, progress)
        out.mkdir(exist_ok=True)
        for entry in ENTRIES:  # the marker last: its presence means the set is complete
            target = out / entry
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(staging / entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_all(root: Path, cfg: SynthConfig, progress: bool) -> None:
    jobs = [(label, i) for label in range(len(CLASS_NAMES)) for i in range(cfg.n_per_class)]
    for name in CLASS_NAMES:
        (root / "images" / name).mkdir(parents=True)
        (root / "ground_truth" / name).mkdir(parents=True)
    for label, i in tqdm(jobs, desc="synth", unit="img", disable=not progress):
        name = CLASS_NAMES[label]
        image, gt = render(cfg.seed, label, i, cfg.size, cfg.distractors, cfg.scene)
        Image.fromarray(image).save(root / "images" / name / f"{_stem(name, i)}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(gt).save(root / "ground_truth" / name / f"{_stem(name, i)}.png")
    split_dir = root / "training_testing_split"
    split_dir.mkdir()
    for file, lines in _split(cfg).items():
        (split_dir / file).write_text("\n".join(lines) + "\n")
    meta = {"format": FORMAT, "class_names": list(CLASS_NAMES), **asdict(cfg)}
    (root / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
