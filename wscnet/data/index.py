"""What a data set holds: its samples (image path, label, optional maps) and class names."""

from dataclasses import dataclass, field
from pathlib import Path

from wscnet.choices import SPLITS  # noqa: F401  (re-exported)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class Sample:
    path: Path
    label: int  # -1 when the set has no labels (EMOd)
    gt_map: Path | None = None
    fixation: Path | None = None


@dataclass
class DatasetIndex:
    root: Path
    layout: str
    class_names: list[str]
    samples: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def labels(self) -> list[int]:
        return [s.label for s in self.samples]


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of ``folder`` in sorted order (hidden files skipped)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image(p))


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
