"""A torch Dataset over a DatasetIndex that skips unreadable images instead of crashing."""

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from wscnet.data.index import DatasetIndex
from wscnet.log import log

# Paths already reported in this process: a bad file is named once, not once per epoch.
_REPORTED: set[str] = set()


def report_bad_file(path: Path, problem: str) -> None:
    key = str(path)
    if key not in _REPORTED:
        _REPORTED.add(key)
        log.warning(f"{path}: {problem}; skipped")


def open_rgb(path: Path) -> Image.Image | None:
    """The image as RGB (grayscale, CMYK, palette and RGBA converted), or None if unreadable."""
    return _open(path, "RGB")


def open_map(path: Path) -> Image.Image | None:
    """A ground-truth or fixation map as 8-bit grayscale, or None if unreadable."""
    return _open(path, "L")


def _open(path: Path, mode: str) -> Image.Image | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's EXIF / palette warnings are noise here
            with Image.open(path) as img:
                img.load()  # decode now: a truncated file fails here, not later
                if mode == "L" and img.mode in ("I", "I;16", "F"):
                    return _scaled_to_8bit(img)
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    img = img.convert("RGBA")
                return img.convert(mode)
    except FileNotFoundError:
        report_bad_file(path, "file not found")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = str(exc).replace(repr(str(path)), "").replace(str(path), "").strip() or type(exc).__name__
        report_bad_file(path, f"unreadable image ({detail})")  # the path is named once, up front
    return None


def _scaled_to_8bit(img: Image.Image) -> Image.Image:
    a = np.asarray(img, dtype=np.float64)
    hi = a.max()
    return Image.fromarray((a / hi * 255.0 if hi > 0 else a).astype(np.uint8), "L")


class ImageDataset(Dataset):
    """Items: dict(image=3×S×S, label, index[, gt_map=S×S, fixation=S×S]) or None when unreadable.

    With ``with_maps``, each map kind the set has (``gt_map`` for EmotionROI, ``fixation`` for
    EMOd) is in every item, with ``has_gt_map`` / ``has_fixation``: a sample without its own map
    (or with an unreadable one, reported once) gets an all-zero one and False, so batches still
    collate. Maps come out at the image tensor's size (for ten crops: the whole image, S×S).
    """

    def __init__(self, index: DatasetIndex, transform, with_maps: bool = False):
        self.index = index
        self.transform = transform
        self.with_maps = with_maps
        self.map_kinds = [k for k in ("gt_map", "fixation") if any(getattr(s, k) for s in index.samples)]

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int) -> dict | None:
        sample = self.index.samples[i]
        image = open_rgb(sample.path)
        if image is None:
            return None
        item = {"label": sample.label, "index": i}
        if not self.with_maps:
            item["image"] = self.transform(image)
            return item
        # An unreadable map is reported and treated as absent: the image still counts.
        loaded = {k: open_map(getattr(sample, k)) for k in self.map_kinds if getattr(sample, k) is not None}
        kinds = [k for k, m in loaded.items() if m is not None]
        maps = [loaded[k] for k in kinds]
        tensor, map_tensors = self._apply(image, maps)
        item["image"] = tensor
        size = tensor.shape[-2:]
        for kind in self.map_kinds:
            present = kind in kinds
            item[kind] = map_tensors[kinds.index(kind)] if present else torch.zeros(size)
            item[f"has_{kind}"] = present
        return item

    def _apply(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if hasattr(self.transform, "with_maps"):
            return self.transform.with_maps(image, maps)
        # A plain transform: maps follow as a whole-image resize to the output size.
        tensor = self.transform(image)
        h, w = tensor.shape[-2:]
        resized = [m.resize((w, h), Image.Resampling.BILINEAR) for m in maps]
        return tensor, [torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0) for m in resized]


def collate_skip_bad(batch: list[dict | None]) -> dict | None:
    """default_collate without the unreadable (None) items; None when the whole batch is bad."""
    good = [item for item in batch if item is not None]
    return default_collate(good) if good else None
