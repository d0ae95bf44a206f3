"""Find and read the published layouts of the sentiment data sets (docs/method.md, Data)."""

import csv
import os
import re
from pathlib import Path

from wscnet.choices import LAYOUTS
from wscnet.data.index import SPLITS, DatasetIndex, Sample, list_images, subfolders
from wscnet.data.splits import pick_split, split_fractions
from wscnet.errors import UserError

BINARY_CLASSES = ["negative", "positive"]

# EMOd ships as e.g. EMOdImages1019/ + Fixation_Maps/FixationMap/Continous_map/ (or
# gt_fixation_con_EMOd_1019/); other copies use images/ + fixation_maps/. Match loosely.
_EMOD_IMAGE_DIR = re.compile(r"(image|stimul|img)", re.I)
_EMOD_FIXATION_DIR = re.compile(r"(fix|saliency|gaze)", re.I)
_EMOD_POINTS_DIR = re.compile(r"(bin|point|pts|discrete)", re.I)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: {what} not found")
    return path


def _child(root: Path, name: str) -> Path | None:
    """``root/name``, matching the name case-insensitively (Images/ vs images/)."""
    exact = root / name
    if exact.exists():
        return exact
    if root.is_dir():
        for p in root.iterdir():
            if p.name.lower() == name.lower():
                return p
    return None


def _csv_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix.lower() == ".csv" else []
    return sorted(p for p in root.glob("*.csv") if not p.name.startswith("."))


def _folders_below(root: Path, depth: int) -> list[Path]:
    """Sub-folders of ``root`` down to ``depth`` levels, without listing the files in them."""
    found, level = [], [root]
    for _ in range(depth):
        level = [child for folder in level for child in _child_folders(folder)]
        found.extend(level)
    return found


def _child_folders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]


def _emod_dirs(root: Path) -> tuple[Path, Path] | None:
    """(image folder, fixation-map folder) of an EMOd copy, searched three levels deep."""
    if not root.is_dir():
        return None
    dirs = _folders_below(root, depth=3)
    images = [
        d for d in dirs if _EMOD_IMAGE_DIR.search(d.name) and not _EMOD_FIXATION_DIR.search(str(d.relative_to(root)))
    ]
    fixations = [d for d in dirs if _EMOD_FIXATION_DIR.search(str(d.relative_to(root))) and list_images(d)]
    images = [d for d in images if list_images(d)]
    if not images or not fixations:
        return None
    # Continuous fixation maps (density) are preferred over binary fixation points.
    fixations.sort(key=lambda d: (bool(_EMOD_POINTS_DIR.search(d.name)), len(d.parts), str(d)))
    images.sort(key=lambda d: (len(d.parts), str(d)))
    return images[0], fixations[0]


def detect_layout(root: Path) -> str:
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: data set folder not found")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise UserError(f"{root}: not a data set folder or CSV file")
    if _child(root, "images") and (_child(root, "training_testing_split") or _child(root, "ground_truth")):
        return "emotionroi"
    if _child(root, "Images") and _child(root, "Split"):
        return "twitter"
    if _emod_dirs(root):
        return "emod"
    if _csv_files(root):
        return "csv"
    if sum(1 for d in subfolders(root) if list_images(d)) >= 2:
        return "folder"
    raise UserError(f"{root}: no known data set layout (expected one of {', '.join(LAYOUTS)}; see docs/method.md)")


def load_index(
    root: Path,
    split: str = "train",
    layout: str | None = None,
    fold: int = 1,
    seed: int = 0,
    csv_file: str | None = None,
) -> DatasetIndex:
    """The samples of one split of the data set at ``root`` (layout detected unless given)."""
    root = Path(root)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    _require(root, "data set folder")
    if layout == "folder":
        return _load_folder(root, split, seed)
    if layout == "emotionroi":
        return _load_emotionroi(root, split, seed)
    if layout == "twitter":
        return _load_twitter(root, split, fold, seed)
    if layout == "csv":
        return _load_csv(root, split, seed, csv_file)
    return _load_emod(root, split)


# --- folder (FI): one folder per class, seeded 80/5/15 ------------------------------------------


def _load_folder(root: Path, split: str, seed: int) -> DatasetIndex:
    class_dirs = [d for d in subfolders(root) if list_images(d, recursive=True)]
    if not class_dirs:
        raise UserError(f"{root}: no class folders with images")
    samples = [Sample(path, label) for label, d in enumerate(class_dirs) for path in list_images(d, recursive=True)]
    names = [d.name for d in class_dirs]
    if split != "all":
        samples = split_fractions(samples, {"train": 0.80, "val": 0.05, "test": 0.15}, seed)[split]
    return DatasetIndex(root, "folder", names, samples)


# --- EmotionROI: images/<class>/<file>, ground_truth/<class>/<file>, shipped split -------------


def _stem_map(folder: Path | None) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in reversed(list_images(folder))}


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return [line.strip().replace("\\", "/") for line in text.splitlines() if line.strip()]


def _load_emotionroi(root: Path, split: str, seed: int) -> DatasetIndex:
    images = _require(_child(root, "images") or root / "images", "images folder")
    split_dir = _require(_child(root, "training_testing_split") or root / "training_testing_split", "split folder")
    gt_root = _child(root, "ground_truth")
    names = [d.name for d in subfolders(images)]
    if not names:
        raise UserError(f"{images}: no class folders")
    label_of = {n: i for i, n in enumerate(names)}
    gt_by_class = {n: _stem_map(gt_root / n if gt_root else None) for n in names}

    def read(name: str) -> list[Sample]:
        path = _require(split_dir / name, "split file")
        out = []
        for number, line in enumerate(_read_lines(path), 1):
            # Some copies append a label column; the path is the first field then.
            entry = line if (images / line).exists() else line.split()[0]
            if entry.lower().startswith("images/"):
                entry = entry[len("images/") :]
            cls = entry.split("/")[0]
            if cls not in label_of:
                raise UserError(f"{path}:{number}: unknown class {cls!r} (class folders: {', '.join(names)})")
            image = images / entry
            out.append(Sample(image, label_of[cls], gt_map=gt_by_class[cls].get(Path(entry).stem)))
        return out

    train = read("training.txt") if split != "test" else []
    test = read("testing.txt") if split in ("test", "all") else []
    return DatasetIndex(root, "emotionroi", names, pick_split(split, train, test, seed))


# --- Twitter I/II: Images/ + Split/train_<k>.txt, test_<k>.txt ----------------------------------


def _binary_label(text: str, where: str) -> int:
    t = text.strip().lower()
    if t in ("0", "negative", "neg"):
        return 0
    if t in ("1", "positive", "pos"):
        return 1
    raise UserError(f"{where}: label {text!r} is not 0/1/negative/positive")


def _load_twitter(root: Path, split: str, fold: int, seed: int) -> DatasetIndex:
    images = _require(_child(root, "Images") or root / "Images", "Images folder")
    split_dir = _require(_child(root, "Split") or root / "Split", "Split folder")

    def read(kind: str) -> list[Sample]:
        path = _require(split_dir / f"{kind}_{fold}.txt", f"split file for fold {fold}")
        out = []
        for number, line in enumerate(_read_lines(path), 1):
            match = re.fullmatch(r"(.+?)[\s,]+(\S+)", line)  # the path may hold spaces
            if match is None:
                raise UserError(f"{path}:{number}: expected 'relative/path label', got {line!r}")
            rel, label = match.groups()
            image = images / rel if (images / rel).exists() or not (root / rel).exists() else root / rel
            out.append(Sample(image, _binary_label(label, f"{path}:{number}")))
        return out

    train = read("train") if split != "test" else []
    test = read("test") if split in ("test", "all") else []
    return DatasetIndex(root, "twitter", list(BINARY_CLASSES), pick_split(split, train, test, seed))


# --- CSV (Flickr, Instagram): path,label; class-balanced 90/10, val from train ------------------


def _pick_csv(root: Path, csv_file: str | None) -> Path:
    if csv_file:
        path = Path(csv_file)
        path = path if path.is_absolute() or root.is_file() else root / path
        return _require(path, "CSV file")
    found = _csv_files(root)
    if not found:
        raise UserError(f"{root}: no CSV file (expected a 'path,label' CSV)")
    if len(found) > 1:
        raise UserError(f"{root}: several CSV files ({', '.join(p.name for p in found)}); pick one with --csv-file")
    return found[0]


def _read_csv_rows(path: Path) -> list[tuple[str, str, int]]:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            rows = [(r, n) for n, r in enumerate(csv.reader(fh), 1) if r and any(c.strip() for c in r)]
    except (OSError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read CSV ({exc})") from exc
    if rows and _is_header([r for r, _ in rows]):
        rows = rows[1:]
    out = []
    for row, number in rows:
        if len(row) < 2:
            raise UserError(f"{path}:{number}: expected 'path,label', got {','.join(row)!r}")
        out.append((row[0].strip(), row[1].strip(), number))
    if not out:
        raise UserError(f"{path}: no 'path,label' rows")
    return out


_INT = re.compile(r"-?\d+")
_HEADER_WORDS = ("label", "labels", "class", "sentiment", "category", "y", "target")


def _has_int_label(row: list[str]) -> bool:
    return len(row) > 1 and _INT.fullmatch(row[1].strip()) is not None


def _is_header(rows: list[list[str]]) -> bool:
    """The first row is a header if it names the label column, or if only it has a non-integer label."""
    if len(rows[0]) > 1 and rows[0][1].strip().lower() in _HEADER_WORDS:
        return True
    return len(rows) > 1 and not _has_int_label(rows[0]) and all(_has_int_label(r) for r in rows[1:])


def _csv_classes(labels: list[str]) -> list[str]:
    if all(_INT.fullmatch(t) for t in labels):
        top = max(int(t) for t in labels)
        return list(BINARY_CLASSES) if top <= 1 else [str(i) for i in range(top + 1)]
    return sorted({t.lower() for t in labels})


def _load_csv(root: Path, split: str, seed: int, csv_file: str | None) -> DatasetIndex:
    path = _pick_csv(root, csv_file)
    rows = _read_csv_rows(path)
    names = _csv_classes([label for _, label, _ in rows])
    numeric = all(_INT.fullmatch(label) for _, label, _ in rows)
    samples = []
    for rel, label, number in rows:
        index = int(label) if numeric else names.index(label.lower())
        if not 0 <= index < len(names):
            raise UserError(f"{path}:{number}: label {label!r} out of range")
        samples.append(Sample(path.parent / rel, index))
    if split != "all":
        parts = split_fractions(samples, {"train": 0.9 * 0.9, "val": 0.9 * 0.1, "test": 0.1}, seed)
        samples = parts[split]
    return DatasetIndex(path.parent if root.is_file() else root, "csv", names, samples)


# --- EMOd: images + one fixation map per image, no labels ----------------------------------------


def _load_emod(root: Path, split: str) -> DatasetIndex:
    if split in ("train", "val"):
        raise UserError(f"{root}: EMOd has no labels and no training split; use split 'test' or 'all'")
    dirs = _emod_dirs(root)
    if dirs is None:
        raise UserError(f"{root}: EMOd layout needs an image folder and a fixation-map folder")
    image_dir, fixation_dir = dirs
    maps = _stem_map(fixation_dir)
    samples = []
    for image in list_images(image_dir):
        fixation = maps.get(image.stem) or _prefixed(maps, image.stem)
        if fixation is not None:
            samples.append(Sample(image, -1, fixation=fixation))
    if not samples:
        raise UserError(f"{fixation_dir}: no fixation map matches an image of {image_dir} by file name")
    return DatasetIndex(root, "emod", [], samples)


def _prefixed(maps: dict[str, Path], stem: str) -> Path | None:
    """A map named like ``<stem>_fixMap`` or ``<stem>-fixation`` when no exact stem matches."""
    for key, path in maps.items():
        if key.startswith(stem) and len(key) > len(stem) and not key[len(stem)].isalnum():
            return path
    return None


__all__ = ["LAYOUTS", "detect_layout", "load_index"]
