"""From a model path and source specs to a finished run: what ``webcam`` and the benchmarks call."""

import sys
from pathlib import Path

from .api import Model
from .pipeline import Pipeline, PipelineOptions, RunStats
from .sources import open_sources


def run_videos(model: str | Path, sources: list[str], *, keep_going: bool = False, device: str = "auto",
               threads: int = 0, precision: str | None = None, resize: str | None = None,
               serve: dict | None = None, decoder: str = "auto", **options) -> list[RunStats]:
    """Every source through one model, batched; one RunStats per stream that could be opened.
    ``options``: ``PipelineOptions`` fields (``save`` / ``jsonl`` may hold ``{stream}``);
    ``serve``: host, port, token, max_clients of a live page (``runtime.serve``); ``decoder``: how RTSP
    streams and files are decoded (``runtime.uri.DECODERS``)."""
    for key in ("save", "jsonl"):
        if options.get(key):
            options[key] = Path(options[key])
    settings = PipelineOptions(**options)
    with Model(model, device=device, threads=threads, precision=precision, resize=resize) as opened:
        note = opened.metadata.override_note(resize)
        if note:
            print(note, file=sys.stderr)
        pipeline = Pipeline(opened, open_sources([str(s) for s in sources], keep_going, decoder), settings)
        server = None
        if serve is not None:
            from .serve.attach import serve_pipeline

            server = serve_pipeline(pipeline, serve, resize)
        try:
            return pipeline.run()
        finally:
            if server is not None:
                server.stop()


def run_video(model: str | Path, source: str | int, **options) -> RunStats:
    """One source: ``run_videos`` with a single stream."""
    return run_videos(model, [str(source)], **options)[0]
