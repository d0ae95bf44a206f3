"""Classification metrics: accuracy, per-class accuracy, confusion matrix (numpy only)."""

import numpy as np


def _as_class_indices(preds) -> np.ndarray:
    """Class indices from N (indices) or N×C (scores: the arg-max is the prediction)."""
    a = np.asarray(preds)
    return a.argmax(axis=1) if a.ndim == 2 else a.astype(np.int64).reshape(-1)


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
    """C×C counts; rows are the true class, columns the predicted one."""
    p, y = _as_class_indices(preds), np.asarray(labels, dtype=np.int64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
    bad = (y < 0) | (y >= num_classes) | (p < 0) | (p >= num_classes)
    if bad.any():
        raise ValueError(f"class index outside 0..{num_classes - 1}")
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(preds, labels, num_classes: int) -> dict:
    """dict(accuracy, per_class, mean_class_accuracy, confusion, count), all plain Python values
    (so they go into JSON and weights_only checkpoints). ``per_class[c]`` is None for a class
    with no samples; ``mean_class_accuracy`` averages the others; accuracy of no samples is 0."""
    cm = confusion_matrix(preds, labels, num_classes)
    total = int(cm.sum())
    support = cm.sum(axis=1)
    per_class = [float(cm[c, c] / support[c]) if support[c] else None for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "per_class": per_class,
        "mean_class_accuracy": float(np.mean(present)) if present else 0.0,
        "confusion": cm.tolist(),
        "count": total,
    }
