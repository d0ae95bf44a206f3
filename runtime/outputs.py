"""The standard outputs of a run, built from its options and attached to a pipeline as sinks:
the overlaid video (one file or segments, under a disk budget), the JSONL records, the window
and the progress bar."""

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import RuntimeUserError
from .events_out import EventOptions, attach_event_outputs
from .sinks import DiskBudget, JsonlSink, MosaicSink, Sink, VideoRecorder, WindowSink, display_available
from .sinks.video import MIN_FREE_BYTES

STREAM_FIELD = "{stream}"


@dataclass
class OutputOptions:
    save: Path | None = None  # with several streams the name must hold "{stream}"
    jsonl: Path | str | None = None  # "-": standard output
    segment_s: float | None = None  # seconds of video per file (None: one file)
    max_disk: int | None = None  # bytes all recordings may take; the oldest go first
    min_free: int = MIN_FREE_BYTES  # recording pauses below this much free disk space
    display: bool | None = None  # a window; None: when this machine can show one
    mosaic: bool = False  # keep ``pipeline.mosaic`` (every stream's newest frame) without a window
    progress: bool = True
    events: EventOptions | None = None  # label_changed / summary events, MQTT, webhooks, clips


class ProgressSink(Sink):
    """A progress bar over every stream's frames (a total when the sources say how many)."""

    name = "progress"

    def __init__(self, total: int | None) -> None:
        self.total, self.bar = total, None

    def write(self, frame, prediction) -> None:
        if self.bar is None:  # from the first frame on: a run that never got one shows no bar
            self.bar = tqdm(total=self.total, unit="frame", file=sys.stderr, leave=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def attach_outputs(pipeline, options: OutputOptions) -> list:
    """Build the sinks ``options`` ask for and attach them; the sinks (closed by the pipeline).
    On a bad path nothing is left behind: what was already opened is discarded."""
    made: list = []
    try:
        budget = DiskBudget(options.max_disk) if options.max_disk else None
        for stream in pipeline.streams:
            for make in _stream_outputs(stream, len(pipeline.streams), options, budget):
                made.append(make())
                stream.sinks.append(made[-1])
        if options.events is not None:
            made.extend(attach_event_outputs(pipeline, options.events, budget))
    except BaseException:
        for sink in made:
            getattr(sink, "discard", sink.close)()
        raise
    tiles = [(s.name, s.size) for s in pipeline.streams]
    window = display_available() if options.display is None else options.display
    if window or options.mosaic:
        shown = WindowSink(tiles, pipeline.request_stop) if window else MosaicSink(tiles)
        pipeline.mosaic = shown.mosaic
        pipeline.add_sink(shown)
        made.append(shown)
    if options.progress:
        progress = ProgressSink(_total_frames(pipeline))
        pipeline.add_sink(progress)
        made.append(progress)
    return made


def _stream_outputs(stream, count: int, options: OutputOptions, budget) -> list:
    """Makers of the stream's file sinks, called one by one so that a failure can undo the ones made."""
    makers = []
    if options.save is not None:
        path = stream_path(options.save, stream.name, count, "--save")
        source = stream.source
        size = (source.width, source.height) if source.width else None  # a camera down at the start: later
        makers.append(
            lambda: VideoRecorder(path, lambda: source.fps, size, options.segment_s, budget, options.min_free)
        )
    if options.jsonl is not None:
        target = "-" if str(options.jsonl) == "-" else stream_path(options.jsonl, stream.name, count, "--jsonl")
        makers.append(lambda: JsonlSink(target))
    return makers


def stream_path(template: Path | str, name: str, count: int, option: str) -> Path:
    """``template`` with ``{stream}`` replaced by the stream's name; several streams need the field."""
    text = str(template)
    if count > 1 and STREAM_FIELD not in text:
        raise RuntimeUserError(
            f"{template}: with {count} sources {option} needs {STREAM_FIELD} in its name, "
            f"e.g. out-{STREAM_FIELD}{Path(text).suffix}"
        )
    return Path(text.replace(STREAM_FIELD, name))


def _total_frames(pipeline) -> int | None:
    counts = [s.source.frame_count for s in pipeline.streams]
    if any(c is None for c in counts):
        return None
    limit = pipeline.options.max_frames
    return sum(min(c, limit) if limit else c for c in counts)
