"""Metrics (numpy only): classification, sentiment-region detection, emotional attention."""

from wscnet.metrics.attention import AttentionAccumulator, attention_metrics
from wscnet.metrics.classification import classification_metrics, confusion_matrix
from wscnet.metrics.detection import (
    ERROR_MODES,
    DetectionAccumulator,
    binarise,
    detection_metrics,
    otsu_threshold,
)

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "DetectionAccumulator",
    "detection_metrics",
    "ERROR_MODES",
    "binarise",
    "otsu_threshold",
    "attention_metrics",
    "AttentionAccumulator",
]
