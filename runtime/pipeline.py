"""Capture → batched inference → overlay/writing, for one source or several through one model.

Threads, joined by bounded queues:
- one capture thread per stream: reads frames and pre-processes them into buffers from the
  stream's fixed pool (``Model.prepare``);
- the calling thread batches: it takes at most one frame from each stream and runs them in one
  back-end call (``Model.infer_prepared``) when the batch is full — ``batch_size`` frames, or one
  from every stream still running, whichever is fewer — or ``batch_timeout_ms`` after the batch's
  first frame arrived (nvstreammux's batched-push-timeout), whichever comes first; streams take
  turns at the front so none starves when there are more streams than batch slots;
- one render thread per stream: smoothing, overlay, video / JSONL / extra sinks, its tile of the
  mosaic; a window thread shows the mosaic when there is a display.

A live source keeps only the newest frame (a stale one waiting for inference is dropped); a file
is processed in order, every frame. Each stream ends on its own (its files are closed and moved
into place then); the run ends when all have. Ctrl-C (SIGINT) or SIGTERM stops capture; what is
queued is drained and the sinks are closed, so the videos play and the JSONL files are complete.
The queues and the buffer pools are bounded, so memory stays flat however long the run.

Hooks, per stream, set before ``run()``: ``pipeline.streams[i].sinks`` (objects with
``write(frame, prediction)`` — the overlaid frame and its Prediction, whose ``to_dict()`` is the
JSONL record — and optionally ``close()``) and ``pipeline.streams[i].controls`` (a ``Controls``
read once per frame: map opacity, smoothing, map on/off). ``pipeline.mosaic`` (with
``options.mosaic`` or a window) holds every stream's newest overlaid frame.
"""

import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .api import Model, Prediction
from .errors import RuntimeUserError
from .mosaic import Mosaic
from .pacing import paced
from .sinks import JsonlSink, VideoSink, WindowSink, display_available
from .smoothing import EmaSmoother
from .sources import Source, open_sources

END = object()  # end of stream marker passed down the queues
POLL_S = 0.05
LATENCY_WINDOW = 4096  # recent latencies kept for percentiles: bounded, memory stays flat
MAX_SMOOTH = 0.99
STREAM_FIELD = "{stream}"


@dataclass
class Controls:
    """What a viewer may change while a stream runs; the render stage reads it once per frame."""

    opacity: float = 0.45  # of the sentiment map
    smooth: float = 0.0  # EMA factor for the overlay's probabilities and map, in [0, 1)
    show_map: bool = True


@dataclass
class PipelineOptions:
    resize: str | None = None  # a geometry overriding the model's input contract; only with a bare Backend
    smooth: float = 0.0  # initial Controls of every stream
    opacity: float = 0.45
    save: Path | None = None  # with several streams the name must hold "{stream}"
    jsonl: Path | None = None
    display: bool | None = None  # None: a window when a display exists
    overlay: bool = True
    progress: bool = True
    max_frames: int | None = None  # per stream
    queue_size: int = 2
    batch_size: int | None = None  # None: one slot per stream
    batch_timeout_ms: float = 33.0  # one frame interval at 30 fps
    mosaic: bool = False  # keep pipeline.mosaic up to date even without a window
    realtime: bool = False  # a file plays at its own frame rate (for watching it live)


@dataclass
class RunStats:
    source: str = ""
    backend: str = ""
    stream: str = ""
    frames_read: int = 0
    frames_out: int = 0
    dropped: int = 0  # stale live frames replaced by newer ones
    corrupt: int = 0
    unread: int = 0  # frames a file's header promised that could not be decoded at its end
    interrupted: bool = False
    wall_s: float = 0.0
    infer_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)
    end_to_end_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW), repr=False)
    infer_ms_total: float = 0.0
    batch_frames_total: int = 0  # sum over this stream's frames of the batch size each ran in

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict:
        def pct(values, q):
            return round(float(np.percentile(values, q)), 3) if values else None

        n = self.frames_out
        return {
            "stream": self.stream, "source": self.source, "backend": self.backend,
            "frames_read": self.frames_read, "frames_out": n, "dropped": self.dropped,
            "corrupt": self.corrupt, "unread": self.unread, "interrupted": self.interrupted,
            "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2),
            "infer_ms_mean": round(self.infer_ms_total / n, 3) if n else None,
            "batch_size_mean": round(self.batch_frames_total / n, 2) if n else None,
            "infer_ms_p50": pct(self.infer_ms, 50), "end_to_end_ms_p50": pct(self.end_to_end_ms, 50),
            "end_to_end_ms_p95": pct(self.end_to_end_ms, 95),
        }

    def summary_line(self) -> str:
        d = self.as_dict()
        parts = [f"{d['frames_out']} frames in {d['wall_s']:.1f} s ({d['fps']:.1f} fps)",
                 f"inference {d['infer_ms_mean'] or 0:.1f} ms/frame",
                 f"end-to-end p50 {d['end_to_end_ms_p50'] or 0:.1f} ms"]
        for key in ("dropped", "corrupt", "unread"):
            if d[key]:
                parts.append(f"{d[key]} {key}")
        if d["interrupted"]:
            parts.append("interrupted")
        return ", ".join(parts)


class _Item:
    __slots__ = ("frame", "buffer", "prepared", "prediction")

    def __init__(self, frame, buffer, prepared) -> None:
        self.frame, self.buffer, self.prepared = frame, buffer, prepared
        self.prediction: Prediction | None = None


class FrameQueue:
    """Capture → batcher for one stream; every stream's queue shares one Condition, so the batcher
    waits on all of them at once. ``newest_only`` (live sources) replaces a waiting frame by the
    newer one; otherwise ``put`` waits for room (files: every frame)."""

    def __init__(self, ready: threading.Condition, capacity: int, newest_only: bool, on_drop) -> None:
        self.ready, self.capacity, self.newest_only, self.on_drop = ready, capacity, newest_only, on_drop
        self.items: deque = deque()

    def put(self, item, abort: threading.Event) -> bool:
        with self.ready:
            while len(self.items) >= self.capacity:
                if self.newest_only:
                    self.on_drop(self.items.popleft())
                    continue
                if abort.is_set():
                    return False
                self.ready.wait(POLL_S)
            self.items.append(item)
            self.ready.notify_all()
            return True

    def pop(self):
        """The oldest item or None; call with ``ready`` held."""
        if not self.items:
            return None
        item = self.items.popleft()
        self.ready.notify_all()  # a capture thread may be waiting for room
        return item


class Stream:
    """One source's state: queues, buffer pool, smoothing, controls, sinks and statistics."""

    def __init__(self, index: int, name: str, source: Source, model: Model, options: PipelineOptions,
                 ready: threading.Condition) -> None:
        self.index, self.name, self.source = index, name, source
        self.controls = Controls(opacity=options.opacity, smooth=options.smooth)
        self.sinks: list = []
        self.smoother = EmaSmoother(options.smooth)
        self.stats = RunStats(source=source.description, backend=model.description, stream=name)
        self.pool: queue.Queue = queue.Queue()
        for _ in range(options.queue_size + 2):  # one being filled, queue_size waiting, one in the batch
            self.pool.put(model.framing.new_batch(1))
        self.inbox = FrameQueue(ready, options.queue_size, source.live, self._dropped)
        self.outbox: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self.files: dict = {}

    def _dropped(self, stale) -> None:
        if stale is not END:
            self.pool.put(stale.buffer)
            self.stats.dropped += 1


class Pipeline:
    """``Pipeline(model, sources, options).run()``: ``model`` a Model (or a bare Backend);
    ``sources`` one Source (run() returns its RunStats) or a list of Sources or (name, Source)
    pairs (run() returns one RunStats per stream)."""

    def __init__(self, model, sources, options: PipelineOptions | None = None) -> None:
        self.options = opts = options or PipelineOptions()
        self.model = model if isinstance(model, Model) else Model.from_backend(model, opts.resize)
        self.single = isinstance(sources, Source)
        named = _named_sources([sources] if self.single else list(sources))
        self.ready = threading.Condition()
        self.streams = [Stream(i, name, src, self.model, opts, self.ready) for i, (name, src) in enumerate(named)]
        self.batch_size = opts.batch_size or len(self.streams)
        if self.batch_size < 1 or opts.batch_timeout_ms < 0 or opts.queue_size < 1:
            raise ValueError("batch_size and queue_size must be >= 1 and batch_timeout_ms >= 0")
        self.batch = self.model.framing.new_batch(self.batch_size)
        self.batches = 0
        sizes = [(s.source.width or 1, s.source.height or 1) for s in self.streams]
        self.window = display_available() if opts.display is None else opts.display
        self.mosaic = Mosaic(sizes) if (self.window or opts.mosaic) else None
        self.stop = threading.Event()  # graceful: stop reading, finish what is queued
        self.abort = threading.Event()  # a thread failed: everyone leaves at once
        self.errors: list[BaseException] = []
        self._rendering = 0
        self._bar = None

    # ---- the run -------------------------------------------------------------------------------
    def run(self) -> RunStats | list[RunStats]:
        restore = self._install_signal_handlers()
        threads = []
        try:
            self._open_files()
            self._rendering = len(self.streams)
            self._bar = tqdm(total=self._total_frames(), unit="frame", file=sys.stderr,
                             disable=not self.options.progress, leave=False)
            start = time.perf_counter()
            for stream in self.streams:
                threads.append(self._thread(self._capture, stream, f"capture-{stream.name}"))
                threads.append(self._thread(self._render, stream, f"render-{stream.name}", start))
            if self.window:
                threads.append(self._thread(self._show, None, "window"))
            self._guard(self._batch_loop)
            for thread in threads:
                while thread.is_alive():
                    thread.join(POLL_S)
        finally:
            restore()
            if self._bar is not None:
                self._bar.close()
            for stream in self.streams:
                _close_files(stream)
                stream.source.close()
                stream.stats.corrupt = stream.source.corrupt
                stream.stats.unread = stream.source.unread
        if self.errors:
            raise self.errors[0]
        stats = [stream.stats for stream in self.streams]
        return stats[0] if self.single else stats

    def _thread(self, work, arg, name: str, *more) -> threading.Thread:
        thread = threading.Thread(target=self._guard, args=(work, arg, *more), name=name, daemon=True)
        thread.start()
        return thread

    def _guard(self, work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # re-raised by run() in the calling thread
            self.errors.append(exc)
            self.abort.set()
            self.stop.set()
            with self.ready:
                self.ready.notify_all()

    def _total_frames(self) -> int | None:
        counts = [s.source.frame_count for s in self.streams]
        if any(c is None for c in counts):
            return None
        limit = self.options.max_frames
        return sum(min(c, limit) if limit else c for c in counts)

    # ---- capture: one thread per stream --------------------------------------------------------
    def _capture(self, stream: Stream) -> None:
        limit = self.options.max_frames
        frames = stream.source.frames()
        if self.options.realtime and not stream.source.live:
            frames = paced(frames)
        try:
            for frame in frames:
                if self.stop.is_set():
                    break
                buffer = self._get(stream.pool)
                if buffer is None:
                    break
                item = _Item(frame, buffer, self.model.prepare(frame.image, buffer))
                stream.stats.frames_read += 1
                if not stream.inbox.put(item, self.abort):
                    break
                if limit is not None and stream.stats.frames_read >= limit:
                    break
        finally:
            stream.inbox.put(END, self.abort)  # live: replaces stale frames; a file drains what is queued

    # ---- batching and inference: the calling thread ---------------------------------------------
    def _batch_loop(self) -> None:
        running = list(self.streams)
        turn = 0
        while running and not self.abort.is_set():
            taken, ended = self._collect(running, turn)
            for stream in ended:
                self._put(stream.outbox, END)
            if taken and not self.abort.is_set():
                turn += 1
                self._infer(taken)

    def _collect(self, running: list[Stream], turn: int) -> tuple[list, list]:
        """Wait for a batch: at most one frame per stream, sent when full or when the timeout runs out."""
        taken: list[tuple[Stream, _Item]] = []
        ended: list[Stream] = []
        deadline = None
        with self.ready:
            while not self.abort.is_set():
                shift = turn % len(running) if running else 0
                for stream in running[shift:] + running[:shift]:
                    if len(taken) >= self.batch_size or any(s is stream for s, _ in taken):
                        continue
                    item = stream.inbox.pop()
                    if item is END:
                        running.remove(stream)
                        ended.append(stream)
                    elif item is not None:
                        taken.append((stream, item))
                        deadline = deadline or time.perf_counter() + self.options.batch_timeout_ms / 1000.0
                full = len(taken) >= min(self.batch_size, len(running))
                if full or ended or (taken and time.perf_counter() >= deadline):
                    break
                self.ready.wait(POLL_S if deadline is None else max(deadline - time.perf_counter(), 0.0))
        return taken, ended

    def _infer(self, taken: list) -> None:
        for row, (stream, item) in enumerate(taken):
            self.batch[self.model.framing.rows(row)] = item.buffer
            stream.pool.put(item.buffer)
            item.buffer = None
        predictions = self.model.infer_prepared(self.batch, [item.prepared for _, item in taken])
        self.batches += 1
        for (stream, item), prediction in zip(taken, predictions):
            prediction.index, prediction.timestamp = item.frame.index, item.frame.timestamp
            prediction.stream = None if len(self.streams) == 1 else stream.name
            item.prediction = prediction
            if not self._put(stream.outbox, item):
                return

    # ---- render: one thread per stream ---------------------------------------------------------
    def _render(self, stream: Stream, start: float) -> None:
        stats = stream.stats
        fps, last, last_e2e = 0.0, None, 0.0
        try:
            while True:
                item = self._get(stream.outbox)
                if item is None or item is END:
                    return
                image, prediction = item.frame.image, item.prediction
                if self.options.overlay:
                    readout = f"{fps:4.1f} fps  infer {prediction.timings['inference_ms']:.1f} ms  e2e {last_e2e:.0f} ms"
                    self._draw(stream, image, prediction, readout)
                if "video" in stream.files:
                    stream.files["video"].write(image)
                if self.mosaic is not None:
                    self.mosaic.put(stream.index, image)
                now = time.perf_counter()
                last_e2e = (now - item.frame.captured) * 1000.0
                prediction.timings["end_to_end_ms"] = last_e2e
                if last is not None:
                    rate = 1.0 / max(now - last, 1e-6)
                    fps = 0.9 * fps + 0.1 * rate if fps else rate
                last = now
                if "jsonl" in stream.files:
                    stream.files["jsonl"].write(prediction.to_dict())
                for sink in stream.sinks:
                    sink.write(image, prediction)
                _count(stats, prediction, last_e2e)
                self._bar.update(1)
        finally:
            stats.wall_s = time.perf_counter() - start
            if not self.abort.is_set():
                _close_files(stream)  # this stream is done: its files are complete now
            else:  # let the batcher's last put go through
                while self._get(stream.outbox, wait=False) not in (None, END):
                    pass
            with self.ready:
                self._rendering -= 1

    def _draw(self, stream: Stream, image: np.ndarray, prediction: Prediction, readout: str) -> None:
        controls = stream.controls
        stream.smoother.factor = min(max(float(controls.smooth), 0.0), MAX_SMOOTH)
        probs = stream.smoother("probs", prediction.probs)
        smap = stream.smoother("map", prediction.raw_map) if controls.show_map else None
        self.model.framing.draw(image, probs, smap, prediction.geometry, controls.opacity, readout)

    def _show(self, _unused) -> None:
        window = WindowSink()
        shown = -1
        try:
            while self._rendering > 0 and not self.abort.is_set():
                if self.mosaic.version == shown:
                    time.sleep(0.005)
                    continue
                shown = self.mosaic.version
                window.write(self.mosaic.image())
                if window.closed and window.available:
                    self.stop.set()  # q / Esc
                    return
        finally:
            window.close()

    # ---- queues that give up when the run is aborted -------------------------------------------
    def _get(self, q: queue.Queue, wait: bool = True):
        while True:
            try:
                return q.get(timeout=POLL_S) if wait else q.get_nowait()
            except queue.Empty:
                if self.abort.is_set() or not wait:
                    return None

    def _put(self, q: queue.Queue, item) -> bool:
        while True:
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.abort.is_set():
                    return False

    # ---- files and signals ---------------------------------------------------------------------
    def _open_files(self) -> None:
        opts = self.options
        try:
            for stream in self.streams:
                if opts.save is not None:
                    path = stream_path(opts.save, stream.name, len(self.streams), "--save")
                    size = (stream.source.width, stream.source.height)
                    stream.files["video"] = VideoSink(path, stream.source.fps, size)
                if opts.jsonl is not None:
                    path = stream_path(opts.jsonl, stream.name, len(self.streams), "--jsonl")
                    stream.files["jsonl"] = JsonlSink(path)
        except BaseException:
            for stream in self.streams:
                for sink in stream.files.values():
                    sink.discard()
                stream.files.clear()
            raise

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def request_stop(signum, _frame) -> None:
            if not self.stop.is_set():
                print("\nstopping: finishing the frames in flight and closing the files…", file=sys.stderr)
            for stream in self.streams:
                stream.stats.interrupted = True
            self.stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def _named_sources(sources: list) -> list[tuple[str, Source]]:
    named = [s if isinstance(s, tuple) else (None, s) for s in sources]
    if not named:
        raise ValueError("a pipeline needs at least one source")
    return [(name or f"stream{i}", source) for i, (name, source) in enumerate(named)]


def stream_path(template: Path, name: str, count: int, option: str) -> Path:
    """``template`` with ``{stream}`` replaced by the stream's name; several streams need the field."""
    text = str(template)
    if count > 1 and STREAM_FIELD not in text:
        raise RuntimeUserError(f"{template}: with {count} sources {option} needs {STREAM_FIELD} in its name, "
                               f"e.g. out-{STREAM_FIELD}{Path(text).suffix}")
    return Path(text.replace(STREAM_FIELD, name))


def _close_files(stream: Stream) -> None:
    for sink in [*stream.files.values(), *stream.sinks]:
        if hasattr(sink, "close"):
            sink.close()
    stream.files.clear()
    stream.sinks = []


def _count(stats: RunStats, prediction: Prediction, end_to_end_ms: float) -> None:
    infer_ms = prediction.timings["inference_ms"]
    stats.frames_out += 1
    stats.infer_ms.append(infer_ms)
    stats.infer_ms_total += infer_ms
    stats.batch_frames_total += prediction.timings["batch_size"]
    stats.end_to_end_ms.append(end_to_end_ms)


def run_pipeline(model, source: Source, options: PipelineOptions | None = None) -> RunStats:
    return Pipeline(model, source, options).run()


class _QueueSink:
    """Hands (frame, prediction) to ``Model.stream``'s consumer, waiting while it is busy."""

    def __init__(self, out: queue.Queue, pipeline: Pipeline) -> None:
        self.out, self.pipeline = out, pipeline

    def write(self, frame: np.ndarray, prediction: Prediction) -> None:
        while not self.pipeline.abort.is_set():
            try:
                self.out.put((frame, prediction), timeout=POLL_S)
                return
            except queue.Full:
                continue


def stream_predictions(model: Model, source, *, keep_going: bool = False, **options):
    """``Model.stream``: the pipeline in a background thread, its predictions yielded here."""
    specs = [str(s) for s in source] if isinstance(source, (list, tuple)) else [str(source)]
    settings = {"display": False, "overlay": False, "progress": False, **options}
    pipeline = Pipeline(model, open_sources(specs, keep_going), PipelineOptions(**settings))
    out: queue.Queue = queue.Queue(maxsize=2)
    for stream in pipeline.streams:
        stream.sinks.append(_QueueSink(out, pipeline))

    def work() -> None:
        try:
            pipeline.run()
        except BaseException as exc:
            pipeline.errors.append(exc)
        finally:
            out.put(END)  # unbounded wait is fine: the consumer drains until END

    runner = threading.Thread(target=work, name="stream", daemon=True)
    runner.start()
    try:
        while (item := out.get()) is not END:
            yield item
    finally:
        if runner.is_alive():  # the consumer left early: stop everything, let the threads out
            pipeline.abort.set()
            pipeline.stop.set()
            while runner.is_alive():
                try:
                    out.get(timeout=POLL_S)
                except queue.Empty:
                    pass
        runner.join()
    if pipeline.errors:
        raise pipeline.errors[0]
