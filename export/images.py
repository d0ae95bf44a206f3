"""Real images for calibration, parity and bench: found (a folder, or a split of the data set a
checkpoint was trained on) and turned into model inputs by the runtime's one frame → tensor
function under the model's input contract, exactly as a camera frame would be."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.contract import InputContract
from runtime.preprocess import Preprocessor
from runtime.sources import IMAGE_SUFFIXES
from wscnet.errors import UserError

# Folders of a data set that hold maps, not pictures (EmotionROI's ground_truth/, EMOd's maps).
NOT_PICTURES = ("ground_truth", "masks", "fixation_maps", "maps")


@dataclass(frozen=True)
class ImageSet:
    """Images for a step (calibration, parity, bench), with a line saying where they came from."""

    files: tuple[Path, ...]
    description: str

    def __len__(self) -> int:
        return len(self.files)


def folder_images(root: Path, n: int | None = None) -> ImageSet:
    files = find_images(root, n)
    return ImageSet(tuple(files), f"{root} (folder, {len(files)} images)")


def split_images(args: dict, split: str, n: int | None = None) -> ImageSet:
    """Images of one split of the data set a run trained on (``args``: the run's train options)."""
    from wscnet.data import load_index

    root = Path(args["data"])
    index = load_index(
        root,
        split=split,
        layout=args.get("layout"),
        fold=args.get("fold", 1),
        seed=args.get("split_seed", 0),
        csv_file=args.get("csv_file"),
    )
    files = [s.path for s in index.samples]
    if not files:
        raise UserError(f"{root}: no images in its {split} split")
    total = len(files)
    files = spread(files, n)
    return ImageSet(tuple(files), f"{root}, {split} split ({len(files)} of {total} images)")


def spread(files: list[Path], n: int | None) -> list[Path]:
    """``n`` of ``files`` spread evenly (all of them when n is None or larger)."""
    if n is None or n >= len(files):
        return list(files)
    picks = np.linspace(0, len(files) - 1, n).round().astype(int)
    return [files[i] for i in picks]


def find_images(root: Path, n: int | None = None) -> list[Path]:
    """Image files under ``root`` (sorted; map folders skipped); with ``n``, n spread evenly."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: image folder not found")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part in NOT_PICTURES for part in p.relative_to(root).parts[:-1])
    )
    if not files:
        raise UserError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found in it or below")
    return spread(files, n)


def load_image(path: Path, contract: InputContract) -> np.ndarray:
    """One image as the model's 3×S×S float32 input."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{path}: not a readable image")
    return Preprocessor(contract).tensor(bgr)[0]


def load_batch(paths: list[Path], contract: InputContract) -> np.ndarray:
    return np.stack([load_image(p, contract) for p in paths])
