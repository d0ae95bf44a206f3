"""Which frames to infer: a per-stream inference rate within what the box can infer.

Every frame is drawn; only some are inferred (the others are drawn with the stream's last
prediction). Each stream asks for a rate: every frame (the default), ``infer_every`` N frames, or
``infer_fps`` F. The scheduler measures the box's inference capacity from the inference times it is
told about (``observe``) and, when the streams together ask for more than ``budget`` × capacity,
shares that capacity max-min fairly: a stream asking less than an equal share gets what it asks,
the rest split what is left equally. So inference never queues up behind the cameras (no stream
falls behind live) and every stream gets its share (none starves).

Each stream keeps a credit in inferences: every frame adds its allotted rate × the time since
the stream's previous frame (at most one frame's worth of what the stream asks); a frame is
inferred when the credit reaches one, which then costs one. An optional change trigger infers
early: a frame whose grey thumbnail (``thumbnail``) differs from the one last inferred by more
than ``change_threshold`` (mean absolute difference, 0–255) is inferred once the credit is at
least zero: it borrows the next regular inference, so the long-run rate stays within the share.

Streams that start together would fall due together, and their frames would make one long
inference call each time. So the first time the box limits the streams (every stream's frame rate
known, the shares in force), the k-th of N streams is given a credit of k / N: their turns are
spread evenly over an inference interval.

Plain class, no threads, no clock of its own: callers pass each frame's time (a fake one in tests).
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

THUMBNAIL_SIZE = (32, 18)  # (w, h): enough to see a scene change, ~0.05 ms to make
DEFAULT_BUDGET = 0.8  # share of the inference capacity the streams may use together; the rest is headroom
COST_SMOOTHING = 0.2  # weight of the newest observation in the per-frame inference cost
RATE_SMOOTHING = 0.1  # weight of the newest frame interval in a stream's frame rate


@dataclass
class StreamRate:
    """What one stream asks for and what it has had."""

    infer_every: int | None = None
    infer_fps: float | None = None
    credit: float = 1.0  # the first frame is always inferred
    last_time: float | None = None
    fps: float | None = None  # the stream's own frame rate, measured from its frame times
    allotted_fps: float | None = None  # None: unconstrained
    last_thumbnail: np.ndarray | None = field(default=None, repr=False)
    frames: int = 0
    inferred: int = 0
    triggered: int = 0

    def asked_fps(self) -> float | None:
        """The inference rate this stream asks for (None until its frame rate is known)."""
        if self.infer_fps is not None:
            return self.infer_fps if self.fps is None else min(self.infer_fps, self.fps)
        if self.fps is None:
            return None
        return self.fps / (self.infer_every or 1)

    def per_frame_ask(self, interval: float) -> float:
        """Credit one frame adds when the box is not the limit."""
        if self.infer_fps is not None:
            return min(1.0, self.infer_fps * interval)
        return 1.0 / (self.infer_every or 1)


class InferenceScheduler:
    """``decide(stream, frame_time, thumbnail=None) -> bool`` per frame; ``observe(seconds, frames)``
    after each inference call (``frames`` frames took ``seconds``)."""

    def __init__(
        self,
        budget: float = DEFAULT_BUDGET,
        change_threshold: float | None = None,
        initial_cost_s: float | None = None,
        share_capacity: bool = True,
    ) -> None:
        """``share_capacity`` False: every stream gets what it asks for, whatever the box can do
        (files read as fast as they decode have no live edge to keep up with)."""
        if not 0.0 < budget <= 1.0:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        if change_threshold is not None and change_threshold <= 0:
            raise ValueError(f"change_threshold must be > 0 (mean grey-level difference), got {change_threshold}")
        self.budget = budget
        self.change_threshold = change_threshold
        self.cost_s = initial_cost_s  # seconds of inference per frame; None until measured
        self.share_capacity = share_capacity
        self.streams: dict[str, StreamRate] = {}
        self._spread = False  # whether the streams' turns have been spread (once, see the module doc)

    def add_stream(self, stream: str, infer_every: int | None = None, infer_fps: float | None = None) -> None:
        """Declare a stream and what it asks for (neither: every frame, capacity permitting)."""
        if infer_every is not None and infer_fps is not None:
            raise ValueError(f"stream {stream}: give infer_every or infer_fps, not both")
        if infer_every is not None and infer_every < 1:
            raise ValueError(f"stream {stream}: infer_every must be >= 1, got {infer_every}")
        if infer_fps is not None and infer_fps <= 0:
            raise ValueError(f"stream {stream}: infer_fps must be > 0, got {infer_fps}")
        self.streams[stream] = StreamRate(infer_every, infer_fps)

    @property
    def capacity_fps(self) -> float | None:
        """Frames per second the box can infer, from the observed inference times."""
        return None if not self.cost_s else 1.0 / self.cost_s

    def observe(self, inference_seconds: float, frames: int = 1) -> None:
        """One inference call of ``frames`` frames took ``inference_seconds``."""
        if frames < 1 or inference_seconds <= 0:
            return
        cost = inference_seconds / frames
        self.cost_s = cost if self.cost_s is None else (1 - COST_SMOOTHING) * self.cost_s + COST_SMOOTHING * cost
        self._share()

    def decide(self, stream: str, frame_time: float, thumbnail: np.ndarray | None = None) -> bool:
        """Whether to infer this frame of ``stream`` (seconds, any origin, increasing per stream)."""
        rate = self.streams.get(stream)
        if rate is None:
            self.add_stream(stream)
            rate = self.streams[stream]
        rate.frames += 1
        if rate.last_time is not None:
            self._earn(rate, max(frame_time - rate.last_time, 0.0))
        rate.last_time = frame_time
        infer = rate.credit >= 1.0 - 1e-9
        if not infer and self._changed(rate, thumbnail) and rate.credit >= 0.0:
            infer = True
            rate.triggered += 1
        if infer:
            rate.credit -= 1.0
            rate.inferred += 1
            if thumbnail is not None:
                rate.last_thumbnail = thumbnail
        return infer

    def _earn(self, rate: StreamRate, interval: float) -> None:
        if interval > 0:
            fps = 1.0 / interval
            rate.fps = fps if rate.fps is None else (1 - RATE_SMOOTHING) * rate.fps + RATE_SMOOTHING * fps
            self._share()
        gain = rate.per_frame_ask(interval)
        if rate.allotted_fps is not None:
            gain = min(gain, rate.allotted_fps * interval)
        rate.credit = min(rate.credit + gain, 1.0)

    def _changed(self, rate: StreamRate, thumbnail: np.ndarray | None) -> bool:
        if self.change_threshold is None or thumbnail is None or rate.last_thumbnail is None:
            return False
        difference = cv2.absdiff(thumbnail, rate.last_thumbnail)
        return float(np.mean(difference)) > self.change_threshold

    def _share(self) -> None:
        """Allot each stream its max-min fair share of ``budget`` × capacity (None: unconstrained)."""
        asks = {name: rate.asked_fps() for name, rate in self.streams.items()}
        limited = self.share_capacity and self.capacity_fps is not None
        shares = fair_shares(asks, self.budget * self.capacity_fps if limited else None)
        for name, rate in self.streams.items():
            rate.allotted_fps = shares.get(name)
        if not self._spread and None not in asks.values() and any(share is not None for share in shares.values()):
            self._spread = True
            for k, rate in enumerate(self.streams.values()):
                rate.credit = k / len(self.streams)

    def stats(self) -> dict[str, dict]:
        """Per stream: frames seen, inferred, inferred early by the trigger, allotted rate."""
        return {
            name: {
                "frames": r.frames,
                "inferred": r.inferred,
                "triggered": r.triggered,
                "fps": r.fps,
                "allotted_fps": r.allotted_fps,
            }
            for name, r in self.streams.items()
        }


def fair_shares(asks: dict[str, float | None], capacity: float | None) -> dict[str, float | None]:
    """Max-min fair split of ``capacity`` among ``asks`` (None entries: rate unknown yet, left out;
    capacity None: everyone gets None, i.e. no limit). When the asks fit, nobody is limited."""
    known = {name: ask for name, ask in asks.items() if ask is not None}
    if capacity is None or sum(known.values()) <= capacity:
        return {name: None for name in asks}
    shares: dict[str, float | None] = {name: None for name in asks if name not in known}
    left, waiting = capacity, sorted(known, key=known.get)
    while waiting:
        equal = left / len(waiting)
        name = waiting[0]
        if known[name] > equal:  # every remaining stream asks more than an equal split: split it
            shares.update({other: equal for other in waiting})
            break
        shares[name] = known[name]
        left -= known[name]
        waiting.pop(0)
    return shares


def thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    """The frame as a small grey image for the change trigger (uint8, ``THUMBNAIL_SIZE``)."""
    h, w = frame_bgr.shape[:2]
    step = max(1, min(w // (4 * THUMBNAIL_SIZE[0]), h // (4 * THUMBNAIL_SIZE[1])))
    small = cv2.resize(frame_bgr[::step, ::step], THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
