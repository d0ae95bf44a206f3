"""One stream's newest overlaid frame and record, written by the render thread, read by the server.

``publish`` only swaps references and updates counters: its cost does not depend on how many
people watch. The JPEG of a frame is made at most once (``jpeg``), cached for every viewer, and
only when someone asks for it; a frame nobody asked for is never encoded.
"""

import threading
import time
from collections import Counter, deque

import cv2
import numpy as np

from ..smoothing import RateMeter

JPEG_QUALITY = 80
RATE_SMOOTHING = 0.9  # EMA weight of the previous fps / latency figures shown on the page
EVENTS_KEPT = 64  # recent events per stream, for listeners that join or fall behind


class StreamHub:
    def __init__(self, name: str, jpeg_quality: int = JPEG_QUALITY) -> None:
        self.name = name
        self.jpeg_quality = int(jpeg_quality)
        self._lock = threading.Lock()  # guards the newest frame/record and the counters
        self._encode_lock = threading.Lock()  # one encoder at a time: each frame encoded once
        self._frame: np.ndarray | None = None
        self._record: dict | None = None
        self.seq = 0  # how many frames have been published
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0
        self._jpeg_index = None
        self.jpeg_encodes = 0
        self.dropped = 0
        self.rate = RateMeter(RATE_SMOOTHING)
        self.inference_ms = 0.0
        self.end_to_end_ms = 0.0
        self.online = True
        self.event_counts: Counter = Counter()
        self._events: deque = deque(maxlen=EVENTS_KEPT)  # (seq, event dict)
        self._events_seq = 0

    def publish(self, frame: np.ndarray, record: dict, dropped: int | None = None) -> None:
        """Keep ``frame`` (by reference: the caller must not change it afterwards) and ``record``."""
        inference_ms = record.get("inference_ms")  # None for a frame drawn with an earlier prediction
        end_to_end_ms = float(record.get("end_to_end_ms") or 0.0)
        with self._lock:
            self._frame, self._record = frame, record
            self.seq += 1
            if dropped is not None:
                self.dropped = int(dropped)
            self.rate.tick(time.perf_counter())
            if inference_ms is not None:
                self.inference_ms = _ema(self.inference_ms, float(inference_ms))
            self.end_to_end_ms = _ema(self.end_to_end_ms, end_to_end_ms)

    def publish_event(self, event: dict) -> None:
        """Keep one event (``Event.to_dict()``); a source's events also set ``online``."""
        with self._lock:
            self._events_seq += 1
            self._events.append((self._events_seq, event))
            self.event_counts[event["event"]] += 1
            if event["event"] in ("source_offline", "source_online"):
                self.online = event["event"] == "source_online"

    def events_seq(self) -> int:
        with self._lock:
            return self._events_seq

    def events_after(self, seq: int) -> list[tuple[int, dict]]:
        """The kept events newer than ``seq``, oldest first."""
        with self._lock:
            return [(s, e) for s, e in self._events if s > seq]

    def newest(self) -> tuple[int, np.ndarray | None, dict | None]:
        with self._lock:
            return self.seq, self._frame, self._record

    def jpeg(self) -> tuple[int, bytes, object] | None:
        """(seq, JPEG bytes, frame index) of the newest frame, encoding it only if nobody has yet."""
        with self._encode_lock:
            seq, frame, record = self.newest()
            if frame is None:
                return None
            if seq != self._jpeg_seq:
                ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"stream {self.name}: OpenCV could not encode a frame as JPEG")
                self._jpeg, self._jpeg_seq = encoded.tobytes(), seq
                self._jpeg_index = record.get("index") if record else None
                self.jpeg_encodes += 1
            return self._jpeg_seq, self._jpeg, self._jpeg_index

    def stats(self) -> dict:
        """The page's readouts, and copies of the histograms for /metrics, read together."""
        with self._lock:
            return {
                "stream": self.name,
                "frames": self.seq,
                "fps": round(self.rate.rate, 2),
                "inference_ms": round(self.inference_ms, 2),
                "end_to_end_ms": round(self.end_to_end_ms, 2),
                "dropped": self.dropped,
                "jpeg_encodes": self.jpeg_encodes,
                "online": self.online,
                "events": dict(self.event_counts),
            }


def _ema(previous: float, value: float) -> float:
    return value if previous == 0.0 else RATE_SMOOTHING * previous + (1.0 - RATE_SMOOTHING) * value
