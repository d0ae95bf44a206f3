"""Real images for calibration and parity: found recursively, preprocessed like the checkpoint.

RGB, resized to S×S, ``(pixel / 255 - mean) / std``, N×3×S×S float32.
"""

from pathlib import Path

import cv2
import numpy as np

from wscnet.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Folders of a data set that hold maps, not pictures (EmotionROI's ground_truth/, EMOd's maps).
NOT_PICTURES = ("ground_truth", "masks", "fixation_maps", "maps")


def find_images(root: Path, n: int | None = None) -> list[Path]:
    """Image files under ``root`` (sorted; map folders skipped); with ``n``, n spread evenly."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: image folder not found")
    files = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part in NOT_PICTURES for part in p.relative_to(root).parts[:-1])
    )
    if not files:
        raise UserError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found in it or below")
    if n is not None and n < len(files):
        picks = np.linspace(0, len(files) - 1, n).round().astype(int)
        files = [files[i] for i in picks]
    return files


def load_image(path: Path, size: int, mean, std) -> np.ndarray:
    """One image as a 3×S×S float32 array."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_batch(paths: list[Path], size: int, mean, std) -> np.ndarray:
    return np.stack([load_image(p, size, mean, std) for p in paths])
