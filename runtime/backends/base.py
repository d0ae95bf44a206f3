"""The one interface every back-end offers: load, infer a batch, close."""

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..metadata import ModelMetadata

OUTPUT_NAMES = ("probs", "det_scores", "sentiment_map")


class Backend(ABC):
    """``infer(batch N×3×S×S float32) -> {"probs": N×C, "det_scores": N×C, "sentiment_map": N×1×h×w}``."""

    name = "backend"
    metadata: ModelMetadata
    fixed_batch: int | None = None  # the only batch size the loaded model takes, if it has one

    @abstractmethod
    def load(self, path: str | Path) -> None: ...

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def close(self) -> None: ...

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


def infer_in_slices(run, batch: np.ndarray, fixed_batch: int | None) -> dict[str, np.ndarray]:
    """``run(batch)``, or, for a model exported with a fixed batch, ``run`` on slices of that size
    with the outputs joined again."""
    step = fixed_batch or len(batch)
    if step == len(batch):
        return run(batch)
    parts = [run(batch[i : i + step]) for i in range(0, len(batch), step)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
