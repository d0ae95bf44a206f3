"""The model layer: an exported WSCNet model ready for frames (``Model``) and what it says about one
frame (``Prediction``). Torch-free: numpy, OpenCV and the back-ends only. The pipeline, the API
front (``runtime.api``) and the commands build on this.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .backends import open_backend
from .backends.base import Backend
from .errors import RuntimeUserError
from .events import utc_iso
from .framing import Framing
from .preprocess import Geometry


@dataclass
class Prediction:
    """What the model says about one frame.

    ``probs`` / ``det_scores``: one value per class (classification and detection branch);
    ``raw_map``: the model's h×w sentiment map; ``sentiment_map``: the same map over the frame
    (H×W float32, min–max scaled to [0, 1] as the overlay draws it, NaN outside the region the
    model saw). ``timings`` in ms: ``preprocess_ms``,
    ``inference_ms`` (the whole batch call this frame was part of), ``batch_size``, and
    ``end_to_end_ms`` (capture → result, or → frame written in a pipeline).
    """

    class_names: tuple[str, ...]
    probs: np.ndarray
    det_scores: np.ndarray
    raw_map: np.ndarray
    geometry: Geometry
    frame_size: tuple[int, int]  # (width, height)
    framing: Framing = field(repr=False)
    timings: dict = field(default_factory=dict)
    index: int | None = None  # position in the source (pipelines and stream())
    timestamp: float | None = None  # seconds: media time for files, since start for live sources
    stream: str | None = None  # the stream's name when several run together
    wall: float | None = None  # time.time() when the frame was read: the record's wall-clock "time"
    inferred: bool = True  # False: a frame drawn with the newest prediction of an earlier frame

    @property
    def label(self) -> str:
        return self.class_names[int(np.argmax(self.probs))]

    @property
    def score(self) -> float:
        return float(np.max(self.probs))

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.probs)[::-1][: max(k, 0)]
        return [(self.class_names[c], float(self.probs[c])) for c in order]

    @property
    def sentiment_map(self) -> np.ndarray:
        return self.framing.map_on_frame(self.raw_map, self.geometry, self.frame_size)

    def to_dict(self) -> dict:
        """The JSONL record ``webcam --jsonl`` writes for this frame."""
        record = {} if self.stream is None else {"stream": self.stream}
        record.update(
            {
                "index": self.index,
                "timestamp": None if self.timestamp is None else round(self.timestamp, 4),
                "time": utc_iso(self.wall),
                "inferred": self.inferred,
                "label": self.label,
                "probabilities": {name: round(float(p), 6) for name, p in zip(self.class_names, self.probs)},
                "inference_ms": _rounded(self.timings.get("inference_ms")),
                "end_to_end_ms": _rounded(self.timings.get("end_to_end_ms")),
            }
        )
        return record

    def plot(self, frame: np.ndarray, opacity: float = 0.45, readout: str = "") -> np.ndarray:
        """A copy of ``frame`` with the sentiment map, the top-3 bars and ``readout`` drawn on it."""
        return self.framing.draw(frame.copy(), self.probs, self.raw_map, self.geometry, opacity, readout)


def _rounded(value) -> float | None:
    return None if value is None else round(float(value), 3)


class Model:
    """An exported WSCNet model ready for frames, pre-processed by the model's own input contract
    (``resize``: a geometry — squash, crop, letterbox — that overrides it)."""

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        *,
        threads: int = 0,
        resize: str | None = None,
        precision: str | None = None,
    ) -> None:
        backend = open_backend(path, device=device, threads=threads, precision=precision)
        self.path = path
        self.open_options = {"device": device, "threads": threads, "resize": resize, "precision": precision}
        try:
            self._attach(backend, resize, owns_backend=True)
        except BaseException:
            backend.close()
            raise

    @classmethod
    def from_backend(cls, backend: Backend, resize: str | None = None) -> "Model":
        """Wrap an open back-end (closing the Model leaves it open)."""
        model = cls.__new__(cls)
        model.path, model.open_options = None, {"resize": resize}
        model._attach(backend, resize, owns_backend=False)
        return model

    def _attach(self, backend, resize: str | None, owns_backend: bool) -> None:
        self.backend = backend
        self.metadata = backend.metadata
        self.class_names = tuple(self.metadata.class_names)
        self.framing = Framing(self.metadata, resize)
        self._owns_backend = owns_backend

    @property
    def description(self) -> str:
        return self.backend.description

    @property
    def identity(self) -> str:
        """Who made this model: the checkpoint hash its export recorded (empty for older files)."""
        return str(self.metadata.extra.get("checkpoint_sha256", ""))

    def replacement_problem(self, other: "Model") -> str | None:
        """Why ``other`` cannot take this model's place in a running pipeline, or None when it can:
        the same classes and the same input contract (the frames already prepared stay valid)."""
        if other.class_names != self.class_names:
            return f"its classes differ ({', '.join(other.class_names)} instead of {', '.join(self.class_names)})"
        if other.framing.contract != self.framing.contract:
            return "its input contract differs (input size, normalisation or views)"
        return None

    # ---- one frame, several frames --------------------------------------------------------------
    def predict(self, image: np.ndarray | str | Path) -> Prediction:
        return self.predict_batch([image])[0]

    def predict_batch(self, frames: Sequence[np.ndarray | str | Path]) -> list[Prediction]:
        """One inference call for all ``frames`` (BGR uint8 H×W×3 arrays or image paths)."""
        start = time.perf_counter()
        images = [_as_frame(f) for f in frames]
        if not images:
            return []
        batch = self.framing.new_batch(len(images))
        prepared = [self.prepare(image, batch, row) for row, image in enumerate(images)]
        predictions = self.infer_prepared(batch, prepared)
        for p in predictions:
            p.timings["end_to_end_ms"] = (time.perf_counter() - start) * 1000.0
        return predictions

    # ---- the steps, for pipelines that batch frames from several places -------------------------
    def prepare(self, image: np.ndarray, batch: np.ndarray, row: int = 0) -> tuple[Geometry, tuple[int, int], float]:
        """Pre-process ``image`` into ``batch[row]``: (geometry, frame size, milliseconds)."""
        start = time.perf_counter()
        geometry = self.framing.to_tensor(image, batch, row)
        return geometry, (image.shape[1], image.shape[0]), (time.perf_counter() - start) * 1000.0

    def infer_prepared(self, batch: np.ndarray, prepared: Sequence[tuple]) -> list[Prediction]:
        """One back-end call on the first ``len(prepared)`` frames of ``batch`` (each frame's views
        in its rows, ``framing.rows``)."""
        n = len(prepared)
        start = time.perf_counter()
        outputs = self.backend.infer(batch[: n * self.framing.per_frame])
        infer_ms = (time.perf_counter() - start) * 1000.0
        return [
            Prediction(
                self.class_names,
                *self.framing.combine(outputs, i),
                geometry,
                size,
                self.framing,
                {"preprocess_ms": pre_ms, "inference_ms": infer_ms, "batch_size": n},
            )
            for i, (geometry, size, pre_ms) in enumerate(prepared)
        ]

    def close(self) -> None:
        if self._owns_backend:
            self._owns_backend = False  # closing twice is harmless
            self.backend.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_frame(image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if frame is None:
            raise RuntimeUserError(f"{image}: not an image OpenCV can read")
        return frame
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"predict takes BGR uint8 H×W×3 frames or image paths, got {type(image).__name__} {shape}")
    return image
