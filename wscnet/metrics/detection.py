"""Sentiment-region detection metrics on EmotionROI (docs/method.md, paper Eq. 8-9 and Fig. 12).

Both maps are H×W arrays in [0, 1]. Each is binarised with its own Otsu threshold (256 bins).
Edge cases, decided here once:

- a constant map has no Otsu split: it is all foreground if its value is >= 0.5, else empty
  (a min-max normalised constant prediction is all 0, so it detects nothing);
- an empty detection (|b| = 0) scores P = 0 and R = 0 for that image, error mode (v);
- an image whose binarised ground truth is empty has no region to find: it counts for MAE only
  and is reported in ``skipped_empty_gt``;
- F = 2PR / (P + R) from the averaged P and R, and 0 when P + R = 0.

Error modes (Fig. 12), first match wins: (i) ``correct``: recall > 0.5 (the paper's criterion;
``correct_by="iou"`` uses IoU > 0.5 instead, the overlap criterion of the paper's reference [91]);
(ii) ``inside_gt``: detection inside the ground truth; (iii) ``contains_gt``: ground truth inside
the detection; (iv) ``other_overlap``: any other non-zero overlap; (v) ``no_overlap``.
With the recall criterion (iii) cannot happen (a contained ground truth has recall 1); it can
with ``correct_by="iou"``.
"""

import numpy as np

ERROR_MODES = ("correct", "inside_gt", "contains_gt", "other_overlap", "no_overlap")
BINS = 256


def _bin_indices(x: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(x, dtype=np.float64) * BINS).astype(np.int64), 0, BINS - 1)


def otsu_bin(x: np.ndarray) -> int | None:
    """Otsu's split on a [0, 1] array, as the last bin of the background class (0..254), or
    None when the array is constant (no split separates anything)."""
    hist = np.bincount(_bin_indices(x).ravel(), minlength=BINS).astype(np.float64)
    if np.count_nonzero(hist) < 2:
        return None
    p = hist / hist.sum()
    omega = np.cumsum(p)  # weight of the background class (bins 0..k)
    mu = np.cumsum(p * np.arange(BINS))
    mu_total = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_total * omega - mu) ** 2 / (omega * (1.0 - omega))
    between = np.nan_to_num(between[:-1], nan=-1.0, posinf=-1.0)
    # Every split inside an empty gap of the histogram ties: take the middle of the gap.
    first = int(np.argmax(between))
    last = first
    while last + 1 < between.size and between[last + 1] >= between[first] * (1 - 1e-12):
        last += 1
    return (first + last) // 2


def otsu_threshold(x: np.ndarray) -> float:
    """The Otsu threshold as a value in [0, 1]: foreground is ``x >= threshold`` (bin edges)."""
    k = otsu_bin(x)
    return 0.5 if k is None else (k + 1) / BINS


def binarise(x: np.ndarray) -> np.ndarray:
    """Boolean foreground of a [0, 1] map by Otsu's threshold (constant map: value >= 0.5)."""
    x = np.asarray(x)
    k = otsu_bin(x)
    if k is None:
        return np.full(x.shape, bool(x.size and x.flat[0] >= 0.5))
    return _bin_indices(x) > k


def error_mode(b: np.ndarray, g: np.ndarray, correct_by: str = "recall") -> str:
    """Fig. 12 mode of one detection ``b`` against a non-empty ground truth ``g`` (booleans)."""
    inter = int(np.count_nonzero(b & g))
    nb, ng = int(np.count_nonzero(b)), int(np.count_nonzero(g))
    score = inter / ng if correct_by == "recall" else inter / max(nb + ng - inter, 1)
    if score > 0.5:
        return "correct"
    if inter == 0:
        return "no_overlap"
    if inter == nb:
        return "inside_gt"
    if inter == ng:
        return "contains_gt"
    return "other_overlap"


class DetectionAccumulator:
    """Add (predicted map, ground-truth map) pairs one image at a time; ``result()`` averages."""

    def __init__(self, correct_by: str = "recall"):
        if correct_by not in ("recall", "iou"):
            raise ValueError("correct_by must be 'recall' or 'iou'")
        self.correct_by = correct_by
        self.abs_errors: list[float] = []
        self.precisions: list[float] = []
        self.recalls: list[float] = []
        self.modes = {m: 0 for m in ERROR_MODES}
        self.skipped_empty_gt = 0

    def add(self, pred_map, gt_map) -> dict:
        """Score one image; returns its own {mae, precision, recall, mode} (None where skipped)."""
        pred, gt = np.asarray(pred_map, dtype=np.float64), np.asarray(gt_map, dtype=np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"predicted map {pred.shape} and ground truth {gt.shape} differ in shape")
        mae = float(np.abs(pred - gt).mean())
        self.abs_errors.append(mae)
        b, g = binarise(pred), binarise(gt)
        ng = int(np.count_nonzero(g))
        if ng == 0:
            self.skipped_empty_gt += 1
            return {"mae": mae, "precision": None, "recall": None, "mode": None}
        inter, nb = int(np.count_nonzero(b & g)), int(np.count_nonzero(b))
        precision = inter / nb if nb else 0.0
        recall = inter / ng
        mode = error_mode(b, g, self.correct_by) if nb else "no_overlap"
        self.precisions.append(precision)
        self.recalls.append(recall)
        self.modes[mode] += 1
        return {"mae": mae, "precision": precision, "recall": recall, "mode": mode}

    def result(self) -> dict:
        p = float(np.mean(self.precisions)) if self.precisions else 0.0
        r = float(np.mean(self.recalls)) if self.recalls else 0.0
        scored = sum(self.modes.values())
        return {
            "mae": float(np.mean(self.abs_errors)) if self.abs_errors else 0.0,
            "precision": p,
            "recall": r,
            "f": 2 * p * r / (p + r) if p + r > 0 else 0.0,
            "count": len(self.abs_errors),
            "skipped_empty_gt": self.skipped_empty_gt,
            "error_modes": {
                "counts": dict(self.modes),
                "fractions": {m: (n / scored if scored else 0.0) for m, n in self.modes.items()},
                "correct_by": self.correct_by,
            },
        }


def detection_metrics(pred_maps, gt_maps, correct_by: str = "recall") -> dict:
    """One-shot form of DetectionAccumulator over paired sequences of maps."""
    acc = DetectionAccumulator(correct_by)
    for pred, gt in zip(pred_maps, gt_maps, strict=True):
        acc.add(pred, gt)
    return acc.result()
