"""Events made from the frames themselves: ``label_changed`` (with hysteresis) and periodic ``summary``.

``LabelChangeDetector`` and ``SummaryWindow`` are plain classes fed (time, probabilities): no
threads, no clocks of their own, so a test can drive them with hand-made numbers. ``FrameEvents``
is the sink that feeds them from a stream's predictions and hands what they find to the pipeline
(``pipeline.emit``), which delivers it to every sink of the stream right after the frame.

Time is the stream's time (``Prediction.timestamp``: media time for a file, seconds since the
start for a live source), so a file processed faster than real time gives the same events as
when it is played live.
"""

from collections import Counter

import numpy as np

from ..events import LABEL_CHANGED, SUMMARY
from .base import Sink

SCORE_DIGITS = 6
TIME_SLACK_S = 1e-6  # frame times are index / fps: 1.2 - 0.9 must count as 0.3


def scores_of(class_names, probs) -> dict[str, float]:
    return {name: round(float(p), SCORE_DIGITS) for name, p in zip(class_names, probs)}


class LabelChangeDetector:
    """A new label counts once it has been the top class, with a score of at least ``min_score``,
    on every frame for ``hold_s`` seconds. A frame where another class wins, or where the top score
    is below ``min_score``, restarts the wait, so a flickering label raises nothing.

    ``feed(t, probs, index)`` returns the change (a dict) on the frame that completes the hold, else
    None. The first label held is a change too (``previous`` None).
    """

    def __init__(self, class_names, hold_s: float = 1.0, min_score: float = 0.5) -> None:
        if hold_s < 0 or not 0.0 <= min_score <= 1.0:
            raise ValueError(f"hold_s must be >= 0 and min_score in [0, 1], got {hold_s}, {min_score}")
        self.class_names = list(class_names)
        self.hold_s, self.min_score = float(hold_s), float(min_score)
        self.label: str | None = None  # the label last announced
        self._candidate: str | None = None
        self._since: tuple[float, object] | None = None  # (time, index) the candidate started winning

    def feed(self, t: float, probs, index=None) -> dict | None:
        top = int(np.argmax(probs))
        score = float(probs[top])
        winner = self.class_names[top] if score >= self.min_score else None
        if winner is None or winner == self.label:
            self._candidate, self._since = None, None
            return None
        if winner != self._candidate:
            self._candidate, self._since = winner, (t, index)
        since_t, since_index = self._since
        if t - since_t < self.hold_s - TIME_SLACK_S:
            return None
        previous, self.label = self.label, winner
        self._candidate, self._since = None, None
        return {
            "label": winner,
            "previous": previous,
            "score": round(score, SCORE_DIGITS),
            "scores": scores_of(self.class_names, probs),
            "index": index,
            "timestamp": _rounded(t),
            "since_index": since_index,
            "since_timestamp": _rounded(since_t),
            "held_s": _rounded(t - since_t),
        }


class SummaryWindow:
    """What the frames of the last ``every_s`` seconds said: ``feed`` returns a summary (a dict)
    on the first frame at least ``every_s`` after the window opened, and opens the next one."""

    def __init__(self, class_names, every_s: float) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        self.class_names, self.every_s = list(class_names), float(every_s)
        self._reset(None)

    def _reset(self, start: float | None) -> None:
        self._start, self._first_index, self._frames = start, None, 0
        self._labels: Counter = Counter()
        self._sum = np.zeros(len(self.class_names), np.float64)

    def feed(self, t: float, probs, index=None) -> dict | None:
        if self._start is None:
            self._start = t
        if self._frames == 0:
            self._first_index = index
        self._frames += 1
        self._labels[self.class_names[int(np.argmax(probs))]] += 1
        self._sum += np.asarray(probs, np.float64)
        if t - self._start < self.every_s - TIME_SLACK_S:
            return None
        mean = self._sum / self._frames
        summary = {
            "label": self.class_names[int(np.argmax(mean))],
            "scores": scores_of(self.class_names, mean),
            "frames": self._frames,
            "labels": dict(self._labels),
            "from_index": self._first_index,
            "to_index": index,
            "from_timestamp": _rounded(self._start),
            "to_timestamp": _rounded(t),
        }
        self._reset(t)
        return summary


class FrameEvents(Sink):
    """Feeds one stream's predictions to a ``LabelChangeDetector`` and/or a ``SummaryWindow`` and
    emits what they find through ``pipeline.emit(stream, type, data)``."""

    name = "frame_events"

    def __init__(self, pipeline, stream, detector: LabelChangeDetector | None, summary: SummaryWindow | None) -> None:
        self.pipeline, self.stream = pipeline, stream
        self.detector, self.summary = detector, summary
        self.raised: Counter = Counter()

    def write(self, frame, prediction) -> None:
        t = float(prediction.timestamp or 0.0)
        for kind, source in ((LABEL_CHANGED, self.detector), (SUMMARY, self.summary)):
            found = source.feed(t, prediction.probs, prediction.index) if source is not None else None
            if found is not None:
                self.raised[kind] += 1
                self.pipeline.emit(self.stream, kind, found)

    def counters(self) -> dict[str, int]:
        return dict(self.raised)


def _rounded(value: float) -> float:
    return round(float(value), 4)
