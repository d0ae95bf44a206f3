"""The one interface every back-end offers: load, infer a batch, close.

``Backend.infer`` is the same for every back-end: it checks the batch once, then hands it to the
subclass's ``infer_impl`` in the batch sizes the loaded model takes. A model with a fixed batch B
(a static ONNX export, a static TensorRT engine) gets slices of B, the last one padded with zeros;
a model that takes at most M (a Triton model's max_batch_size) gets slices of at most M. The
caller gets exactly one output row per input row; callers never pad or slice themselves.
"""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..metadata import ModelMetadata

OUTPUT_NAMES = ("probs", "det_scores", "sentiment_map")
T = TypeVar("T")


class Backend(ABC):
    """``infer(batch N×3×S×S float32) -> {"probs": N×C, "det_scores": N×C, "sentiment_map": N×1×h×w}``."""

    name = "backend"
    metadata: ModelMetadata
    fixed_batch: int | None = None  # the only batch size the loaded model takes, if it has one
    max_batch: int | None = None  # the largest batch it takes, if it is bounded
    choice: dict | None = None  # how open_backend chose this back-end (``--device auto``'s probe, or forced)

    @abstractmethod
    def load(self, path: str | Path) -> None: ...

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch the model accepts as it is (``fixed_batch`` rows when it has one)."""

    @abstractmethod
    def close(self) -> None: ...

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.check_batch(batch)
        step = self.fixed_batch or self.max_batch
        if step is None or len(batch) == step or (len(batch) < step and not self.fixed_batch):
            return self.infer_impl(batch)
        parts = [self._infer_slice(batch[start : start + step]) for start in range(0, len(batch), step)]
        return {name: np.concatenate([part[name] for part in parts]) for name in OUTPUT_NAMES}

    def _infer_slice(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        real = len(chunk)
        if self.fixed_batch and real < self.fixed_batch:
            padding = np.zeros((self.fixed_batch - real, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, padding])
        outputs = self.infer_impl(np.ascontiguousarray(chunk))
        return {name: outputs[name][:real] for name in OUTPUT_NAMES}

    @staticmethod
    def loaded(handle: T | None) -> T:
        """``handle`` (a session, compiled model, execution context) or one clear RuntimeError."""
        if handle is None:
            raise RuntimeError("infer() before load() or after close()")
        return handle

    def check_batch(self, batch: np.ndarray) -> None:
        """N×3×S×S float32 with N ≥ 1 and S the model's input size; a ValueError says what is wrong."""
        size = getattr(getattr(self, "metadata", None), "input_size", None)
        expected = (3, size, size) if size else None
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            raise ValueError(f"infer takes a float32 numpy array, got {getattr(batch, 'dtype', type(batch).__name__)}")
        if batch.ndim != 4 or len(batch) == 0 or (expected and batch.shape[1:] != expected):
            wanted = "N×" + "×".join(map(str, expected or ("3", "S", "S")))
            raise ValueError(f"infer takes a batch of {wanted}, got {'×'.join(map(str, batch.shape))}")

    @property
    def executed_precision(self) -> str:
        """What the model computes in here: the file's precision unless the back-end knows better."""
        return self.metadata.precision

    @property
    def description(self) -> str:
        """One line for logs and benchmark tables, e.g. ``onnxruntime[CPUExecutionProvider]``."""
        return self.name

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
