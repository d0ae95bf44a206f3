"""One event model for what the runtime tells other programs, written once for every output.

An ``Event`` reaches every sink of its stream (``Sink.event``): the JSONL file, the live page's
``/events`` stream and ``/metrics``, and any publisher (MQTT, webhooks). Frames are records; events
are the moments worth acting on: a source going offline or coming back, a model replaced, a label
that changed, or a periodic summary.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

SOURCE_OFFLINE = "source_offline"
SOURCE_ONLINE = "source_online"
MODEL_RELOADED = "model_reloaded"
LABEL_CHANGED = "label_changed"
SUMMARY = "summary"
EVENT_TYPES = (SOURCE_OFFLINE, SOURCE_ONLINE, MODEL_RELOADED, LABEL_CHANGED, SUMMARY)


def utc_iso(seconds: float | None = None) -> str:
    """Wall-clock time as ISO 8601 UTC with milliseconds: ``2026-12-07T09:30:01.250Z``."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Event:
    """``type`` one of ``EVENT_TYPES``; ``data`` what that type adds (label, scores, duration_s, …)."""

    type: str
    stream: str
    model: str = ""  # the model's identity: its checkpoint hash from the export provenance
    time: str = field(default_factory=utc_iso)  # wall-clock UTC
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; one of {', '.join(EVENT_TYPES)}")

    def to_dict(self) -> dict:
        """The JSON form every output carries: ``{"event": type, "stream", "time", "model", **data}``."""
        return {"event": self.type, "stream": self.stream, "time": self.time, "model": self.model, **self.data}
