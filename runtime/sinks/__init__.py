"""Where a stream's results go: every output is a ``Sink`` (``write(frame, prediction)``,
``event(event)``, ``close()``): the video recorder, the JSONL file, the window, the live page and
the publishers."""

from .base import Sink
from .disk import DiskBudget, parse_size
from .jsonl import JsonlSink, read_records
from .video import VideoRecorder
from .window import MosaicSink, WindowSink, display_available

__all__ = [
    "DiskBudget",
    "JsonlSink",
    "MosaicSink",
    "Sink",
    "VideoRecorder",
    "WindowSink",
    "display_available",
    "parse_size",
    "read_records",
]
