"""One call from a model path and a source spec to a finished run (what ``webcam`` and benchmarks use)."""

import os
import sys
from pathlib import Path

from .backends import open_backend
from .pipeline import PipelineOptions, RunStats, run_pipeline
from .sources import open_source


def run_video(model: str | Path, source: str | int, *, save=None, jsonl=None, display: bool | None = None,
              smooth: float = 0.0, alpha: float = 0.45, resize: str | None = None, device: str = "auto",
              threads: int = 0, max_frames: int | None = None, progress: bool = True,
              overlay: bool = True) -> RunStats:
    options = PipelineOptions(
        resize=resize, smooth=smooth, alpha=alpha, save=Path(save) if save else None,
        jsonl=Path(jsonl) if jsonl else None, display=display, overlay=overlay, progress=progress,
        max_frames=max_frames,
    )
    if threads < 0:  # capture and render threads need a core of their own to overlap inference
        threads = max(1, (os.cpu_count() or 2) - 1)
    backend = open_backend(model, device=device, threads=threads)
    note = backend.metadata.override_note(resize)
    if note:
        print(note, file=sys.stderr)
    try:
        src = open_source(source)
        return run_pipeline(backend, src, options)
    finally:
        backend.close()
