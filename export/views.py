"""How many views of a frame the exported model runs, decided by measurement.

The held-out pictures are shown to the exported FP32 model as camera-shaped frames (16:9, 4:3,
9:16) of two kinds: ``stretched`` (the picture resized to fill the frame) and ``wider scene`` (the
picture at the centre of a larger frame whose rest continues it by reflection, so objects keep
their shape, as in a camera frame around them). Every candidate is scored on every row: each
geometry alone (squash, crop, letterbox) and each pair of them, combined by the mean of the two
views' probabilities or by the more confident view. The mean accuracy over the rows ranks them
(then their worst row); two views are recorded only where the best pair beats the best single
view by more than ``MARGIN`` in mean accuracy or in worst-row accuracy (a second view that rescues
one frame shape pays for itself too), else the best single view (half the inference per frame).

The decision and its figures go into the model file next to the input contract, metadata key
``view_decision`` (JSON), read back by ``runtime.metadata.ModelMetadata.view_decision``.
"""

import json
import logging
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from runtime.contract import GEOMETRIES, InputContract
from runtime.metadata import CONTRACT_KEY, VIEW_DECISION_KEY

log = logging.getLogger("export")

MARGIN = 0.01  # accuracy a second view must add (mean over the rows, or worst row) to be worth its cost
ASPECTS = {"16:9": (16, 9), "4:3": (4, 3), "9:16": (9, 16)}
KINDS = ("stretched", "wider scene")
COMBINES = ("mean", "max_confidence")
BATCH = 16


def frame_size(side: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of a frame of ``aspect`` whose shorter side is ``side``."""
    aw, ah = aspect
    return (round(side * aw / ah), side) if aw >= ah else (side, round(side * ah / aw))


def wider_scene(picture: np.ndarray, size: tuple[int, int], place: float = 0.5) -> tuple[np.ndarray, tuple]:
    """The picture inside a larger frame, the rest filled by reflection; returns (frame, box)."""
    h, w = picture.shape[:2]
    fw, fh = size
    left, top = round((fw - w) * place), round((fh - h) * place)
    frame = cv2.copyMakeBorder(picture, top, fh - h - top, left, fw - w - left, cv2.BORDER_REFLECT_101)
    return frame, (left, top, w, h)


def stretched(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(picture, size, interpolation=cv2.INTER_LINEAR)


def camera_frame(picture: np.ndarray, aspect: tuple[int, int], kind: str) -> np.ndarray:
    """The picture as a frame of ``aspect``: ``stretched`` or inside a ``wider scene``."""
    size = frame_size(min(picture.shape[:2]), aspect)
    return stretched(picture, size) if kind == "stretched" else wider_scene(picture, size)[0]


def row_names() -> list[str]:
    return [f"{aspect} {kind}" for aspect in ASPECTS for kind in KINDS]


def view_probabilities(backend, frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per geometry, the model's probabilities (N×C) on ``frames`` seen through that view alone."""
    from runtime.framing import Framing

    probs = {}
    for geometry in GEOMETRIES:
        framing = Framing(backend.metadata, resize=geometry)
        parts = []
        for start in range(0, len(frames), BATCH):
            chunk = frames[start : start + BATCH]
            batch = framing.new_batch(len(chunk))
            for row, frame in enumerate(chunk):
                framing.to_tensor(frame, batch, row)
            parts.append(backend.infer(batch)["probs"])
        probs[geometry] = np.concatenate(parts)
    return probs


def combined_labels(probs: dict[str, np.ndarray], views: tuple[str, ...], combine: str) -> np.ndarray:
    """Top-1 per frame of ``views`` combined as ``runtime.framing.Framing.combine`` does."""
    stacked = np.stack([probs[v] for v in views])  # V×N×C
    if combine == "max_confidence":
        best = stacked.max(axis=2).argmax(axis=0)  # per frame, the most confident view
        return stacked[best, np.arange(stacked.shape[1])].argmax(axis=1)
    return stacked.mean(axis=0).argmax(axis=1)


def candidates() -> list[tuple[tuple[str, ...], str]]:
    """(views, combine) of every candidate: each geometry alone, each pair under each combination."""
    singles = [((g,), "mean") for g in GEOMETRIES]
    return singles + [(pair, combine) for pair in combinations(GEOMETRIES, 2) for combine in COMBINES]


def candidate_name(views: tuple[str, ...], combine: str) -> str:
    return views[0] if len(views) == 1 else f"{'+'.join(views)} {combine}"


def score_candidates(row_probs: dict[str, dict[str, np.ndarray]], truth: np.ndarray) -> dict[str, dict]:
    """Accuracy of every candidate on every row, and their mean (``mean``)."""
    table = {}
    for views, combine in candidates():
        rows = {
            row: float((combined_labels(probs, views, combine) == truth).mean()) for row, probs in row_probs.items()
        }
        table[candidate_name(views, combine)] = {
            "views": list(views),
            "combine": combine,
            "rows": rows,
            "mean": float(np.mean(list(rows.values()))),
            "worst": float(min(rows.values())),
        }
    return table


def decide(table: dict[str, dict], margin: float = MARGIN) -> dict:
    """The best single view, the best pair (by mean accuracy, then worst row; ties: earlier wins, so
    squash, whose map covers the whole frame, before crop before letterbox), and which the model keeps."""

    def rank(name: str) -> tuple[float, float]:
        return table[name]["mean"], table[name]["worst"]

    best_single = max((name for name, c in table.items() if len(c["views"]) == 1), key=rank)
    best_pair = max((name for name, c in table.items() if len(c["views"]) > 1), key=rank)
    gain = table[best_pair]["mean"] - table[best_single]["mean"]
    worst_gain = table[best_pair]["worst"] - table[best_single]["worst"]
    two = gain > margin or worst_gain > margin
    chosen = best_pair if two else best_single
    reason = (
        f"{best_pair} {_signed(gain)} mean accuracy and {_signed(worst_gain)} on the worst row over "
        f"{best_single} ({'more' if two else 'not more'} than the margin {margin})"
    )
    return {
        "chosen": chosen,
        "views": table[chosen]["views"],
        "combine": table[chosen]["combine"],
        "best_single": best_single,
        "best_pair": best_pair,
        "gain": round(gain, 4),
        "worst_row_gain": round(worst_gain, 4),
        "margin": margin,
        "reason": reason,
    }


def _signed(value: float) -> str:
    return f"{'adds' if value >= 0 else 'loses'} {abs(value):.3f}"


def measure_views(model_path: Path, pictures: list[Path], truth: np.ndarray) -> dict:
    """Every candidate's accuracy on every camera-shaped row, plus the pictures as they are."""
    from runtime.backends import open_backend

    images = [_read(p) for p in pictures]
    with open_backend(model_path, device="cpu") as backend:
        picture_probs = view_probabilities(backend, images)["squash"]
        row_probs = {
            f"{aspect} {kind}": view_probabilities(backend, [camera_frame(i, size, kind) for i in images])
            for aspect, size in ASPECTS.items()
            for kind in KINDS
        }
    return {
        "images": len(images),
        "picture_accuracy": float((picture_probs.argmax(1) == truth).mean()),
        "candidates": score_candidates(row_probs, truth),
    }


def _read(path: Path) -> np.ndarray:
    from wscnet.errors import UserError

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: not an image OpenCV can read (view decision)")
    return image


def held_out_pictures(source: dict, n: int) -> tuple[list[Path], np.ndarray, str]:
    """``n`` labelled pictures of the test split of the data set a run trained on, spread evenly."""
    from wscnet.data import load_index

    from .images import spread

    root = Path(source["data"])
    index = load_index(
        root,
        split="test",
        layout=source.get("layout"),
        fold=source.get("fold", 1),
        seed=source.get("split_seed", 0),
        csv_file=source.get("csv_file"),
    )
    samples = spread([s for s in index.samples if s.label >= 0], n)
    description = f"{root}, test split ({len(samples)} of {len(index.samples)} images)"
    return [s.path for s in samples], np.array([s.label for s in samples]), description


def decide_and_record(model_path: Path, source: dict | None, n: int = 200, margin: float = MARGIN) -> str:
    """Measure the candidates on the held-out split, write the decision into the model file; one
    line saying what was decided (or why nothing was)."""
    if source is None:
        return "views kept as trained: no held-out data recorded in the checkpoint to measure them on"
    paths, truth, description = held_out_pictures(source, n)
    if len(paths) == 0:
        return f"views kept as trained: no labelled pictures in {description}"
    measured = measure_views(model_path, paths, truth)
    decision = {**decide(measured["candidates"], margin), **measured, "data": description}
    record(model_path, decision)
    return summary_line(decision)


def record(model_path: Path, decision: dict) -> InputContract:
    """Rewrite the model file's contract to the chosen views and add ``view_decision`` (atomic)."""
    import onnx

    from wscnet.atomic import atomic_write_bytes

    from .onnx_metadata import model_contract, read_metadata, write_metadata

    model = onnx.load(str(model_path))
    contract = model_contract(model, str(model_path)).with_views(tuple(decision["views"]), decision["combine"])
    metadata = read_metadata(model)
    metadata[CONTRACT_KEY] = contract.to_json()
    metadata[VIEW_DECISION_KEY] = json.dumps(_rounded(decision), sort_keys=True, separators=(",", ":"))
    write_metadata(model, metadata)
    atomic_write_bytes(model_path, model.SerializeToString())
    return contract


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def summary_line(decision: dict) -> str:
    chosen = decision["candidates"][decision["chosen"]]
    return (
        f"views: {decision['chosen']} (camera-frame accuracy {chosen['mean']:.3f}, pictures as they are "
        f"{decision['picture_accuracy']:.3f}, {decision['images']} held-out images); {decision['reason']}"
    )
