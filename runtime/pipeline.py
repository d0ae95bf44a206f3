"""Capture → batched inference → overlay → sinks, for one source or several through one model.

Threads, joined by bounded queues:
- one capture thread per stream: reads frames and pre-processes them into buffers from the
  stream's fixed pool (``Model.prepare``);
- the batcher (the thread that calls ``run``): takes at most one frame per stream and runs them in
  one back-end call; when to send and in which order is ``batching.BatchPolicy``;
- one render thread per stream: smoothing, overlay, then every ``Sink`` of the stream (video file,
  JSONL, window, live page, publishers), and the stream's events in order with its frames.

Which frames are inferred is ``scheduling.InferenceScheduler``'s call (per stream: every frame,
``infer_every`` N, ``infer_fps`` F, and for live or real-time streams at most a fair share of what
the box can infer; ``infer_on_change`` infers a changed scene early). Every frame goes to the render
thread in order; one not inferred is drawn with the stream's newest prediction, through the same
smoother and overlay, and its record says ``"inferred": false``.

A live source keeps only the newest frame (a stale one waiting for inference is dropped); a file
is processed in order, every frame. Each stream ends on its own (its sinks are closed then, a sink
shared by several streams after the last of them); the run ends when all have. ``request_stop``
(the commands call it on SIGINT / SIGTERM) stops capture; what is queued is drained and every sink
is closed, so the videos play and the JSONL files are complete. ``replace_model`` swaps the model
between two batches. Queues and buffer pools are bounded, so memory stays flat however long the run.
"""

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from .batching import BatchPolicy
from .controls import Controls
from .errors import RunFault, RuntimeUserError, log
from .events import MODEL_RELOADED, Event
from .model import Model, Prediction
from .outputs import OutputOptions, attach_outputs
from .pacing import paced
from .scheduling import InferenceScheduler, thumbnail
from .smoothing import EmaSmoother, RateMeter
from .sources import Source

END = object()  # end of stream marker passed down the queues
POLL_S = 0.05
LATENCY_WINDOW = 4096  # recent latencies kept for percentiles: bounded, memory stays flat


@dataclass
class PipelineOptions(OutputOptions):
    """How the pipeline runs, and (``OutputOptions``) the standard outputs ``run()`` attaches."""

    resize: str | None = None  # a geometry overriding the model's input contract; only with a bare Backend
    smooth: float = 0.0  # initial overlay controls of every stream
    opacity: float = 0.45
    overlay: bool = True
    max_frames: int | None = None  # per stream
    queue_size: int = 2
    batch_size: int | None = None  # None: one slot per stream
    batch_timeout_ms: float = 33.0  # one frame interval at 30 fps
    realtime: bool = False  # a file plays at its own frame rate (for watching it live)
    infer_every: int | None = None  # infer every N-th frame of each stream
    infer_fps: float | None = None  # infer at most F frames per second of each stream
    infer_on_change: float | None = None  # infer early when the grey thumbnail changes by this much (0-255)


@dataclass
class RunStats:
    source: str = ""
    backend: str = ""
    stream: str = ""
    frames_read: int = 0
    frames_out: int = 0
    dropped: int = 0  # live frames never drawn: the render queue was full, or nothing inferred yet
    corrupt: int = 0
    unread: int = 0  # frames a file's header promised that could not be decoded at its end
    interrupted: bool = False
    lost: bool = False  # a live source gone for good: its reconnection attempts were used up
    problem: str = ""  # why a lost source was given up
    outages: int = 0
    offline_s: float = 0.0
    models_reloaded: int = 0
    inferred: int = 0  # frames the model ran on; the others were drawn with an earlier frame's prediction
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
            "stream": self.stream,
            "source": self.source,
            "backend": self.backend,
            "frames_read": self.frames_read,
            "frames_out": n,
            "inferred": self.inferred,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "unread": self.unread,
            "interrupted": self.interrupted,
            "lost": self.lost,
            "outages": self.outages,
            "offline_s": round(self.offline_s, 3),
            "models_reloaded": self.models_reloaded,
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "inferred_fps": round(self.inferred / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "infer_ms_mean": round(self.infer_ms_total / self.inferred, 3) if self.inferred else None,
            "batch_size_mean": round(self.batch_frames_total / self.inferred, 2) if self.inferred else None,
            "infer_ms_p50": pct(self.infer_ms, 50),
            "end_to_end_ms_p50": pct(self.end_to_end_ms, 50),
            "end_to_end_ms_p95": pct(self.end_to_end_ms, 95),
        }

    def summary_line(self) -> str:
        d = self.as_dict()
        parts = [
            f"{d['frames_out']} frames in {d['wall_s']:.1f} s ({d['fps']:.1f} fps)",
            f"inference {d['infer_ms_mean'] or 0:.1f} ms/frame",
            *([f"{d['inferred']} inferred ({d['inferred_fps']:.1f} fps)"] if d["inferred"] < d["frames_out"] else []),
            f"end-to-end p50 {d['end_to_end_ms_p50'] or 0:.1f} ms",
        ]
        for key in ("dropped", "corrupt", "unread", "outages"):
            if d[key]:
                parts.append(f"{d[key]} {key}")
        if d["offline_s"]:
            parts.append(f"offline {d['offline_s']:.1f} s")
        if d["models_reloaded"]:
            parts.append(f"{d['models_reloaded']} model reload(s)")
        if d["lost"]:
            parts.append("source lost")
        if d["interrupted"]:
            parts.append("interrupted")
        return ", ".join(parts)


class _Item:
    """One frame on its way to the render thread; ``done`` is set once an inferred frame's
    prediction is there (None: dropped), ``done`` is None for a frame not inferred."""

    __slots__ = ("buffer", "done", "frame", "prediction", "prepared")

    def __init__(self, frame, infer: bool = True) -> None:
        self.frame, self.buffer, self.prepared = frame, None, None
        self.prediction: Prediction | None = None
        self.done = threading.Event() if infer else None

    def finish(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.done.set()


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

    def __init__(
        self, index: int, name: str, source: Source, model: Model, options: PipelineOptions, ready: threading.Condition
    ) -> None:
        self.index, self.name, self.source = index, name, source
        self.controls = Controls(opacity=options.opacity, smoothing=options.smooth)
        self.sinks: list = []
        self.smoother = EmaSmoother(options.smooth)
        self.stats = RunStats(source=source.description, backend=model.description, stream=name)
        self.last: Prediction | None = None  # the newest prediction, for frames that are not inferred
        self.pool: queue.Queue = queue.Queue()
        for _ in range(options.queue_size + 2):  # one being filled, queue_size waiting, one in the batch
            self.pool.put(model.framing.new_batch(1))
        self.inbox = FrameQueue(ready, options.queue_size, source.live, self._dropped)
        self.outbox: queue.Queue = queue.Queue(maxsize=options.queue_size + 8)  # frames, and events
        self.render_thread: threading.Thread | None = None
        self.raised: list[Event] = []  # events a sink raised while rendering: delivered after the frame

    @property
    def size(self) -> tuple[int, int]:
        return (self.source.width or 640, self.source.height or 480)  # a camera down at the start: a guess

    def _dropped(self, stale) -> None:
        """A live frame waiting for inference replaced by a newer one: drawn without its own prediction."""
        if stale is not END:
            self.pool.put(stale.buffer)
            stale.finish(None)


class Pipeline:
    """``Pipeline(model, sources, options).run()`` → one ``RunStats`` per stream. ``model``: a Model
    (or a bare Backend); ``sources``: Sources or (name, Source) pairs (one Source alone is fine).
    Add sinks to ``pipeline.streams[i].sinks`` (or ``add_sink``) and set controls before ``run()``."""

    def __init__(self, model, sources, options: PipelineOptions | None = None) -> None:
        self.options = opts = options or PipelineOptions()
        self.model = model if isinstance(model, Model) else Model.from_backend(model, opts.resize)
        if opts.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        named = _named_sources([sources] if isinstance(sources, Source) else list(sources))
        self.ready = threading.Condition()
        self.streams = [Stream(i, name, src, self.model, opts, self.ready) for i, (name, src) in enumerate(named)]
        self.scheduler = make_scheduler(opts, self.streams)
        self._schedule_lock = threading.Lock()  # capture threads decide, the batcher observes
        # scheduled frames come when they are due, not together: a batch is sent with what is there
        self.policy = BatchPolicy(
            opts.batch_size or len(self.streams), 0.0 if self.scheduler is not None else opts.batch_timeout_ms
        )
        self.batch = self.model.framing.new_batch(self.policy.batch_size)
        self.batches = 0
        self.stop = threading.Event()  # graceful: stop reading, finish what is queued
        self.abort = threading.Event()  # a thread failed: everyone leaves at once
        self.errors: list[BaseException] = []
        self._next_model: Model | None = None
        self._swap_lock = threading.Lock()
        self._sink_users: dict[int, int] = {}
        self._sink_lock = threading.Lock()
        self.mosaic = None  # every stream's newest overlaid frame, with a window or ``options.mosaic``
        self.turned = time.monotonic()  # the batcher's last turn: the heartbeat a watchdog reads

    # ---- what callers use --------------------------------------------------------------------------
    def add_sink(self, sink, streams=None) -> None:
        """Attach one sink to the named streams (all by default); it is closed after the last of them."""
        for stream in self.streams:
            if streams is None or stream.name in streams:
                stream.sinks.append(sink)

    def request_stop(self) -> None:
        """Stop reading; what is queued is drained and every sink closed (SIGINT / SIGTERM)."""
        if not self.stop.is_set():
            log.info("stopping: finishing the frames in flight and closing the files…")
        for stream in self.streams:
            stream.stats.interrupted = True
        self.stop.set()

    def replace_model(self, model: Model) -> None:
        """Swap ``model`` in between two batches (a ``model_reloaded`` event goes to every stream)."""
        with self._swap_lock:
            self._next_model = model

    def emit(self, stream: Stream, event_type: str, data: dict) -> None:
        """An event of ``stream``: it reaches the stream's sinks in order with its frames. A sink that
        emits from the render thread (a label that changed) queues it behind the frame being written."""
        event = Event(event_type, stream.name, self.model.identity, data=data)
        if threading.current_thread() is stream.render_thread:
            stream.raised.append(event)
        else:
            self._put(stream.outbox, event)

    def alive(self, within_s: float) -> bool:
        """The batcher turned in the last ``within_s`` seconds (it turns at least every poll interval)."""
        return time.monotonic() - self.turned <= within_s

    def run(self) -> list[RunStats]:
        threads = []
        attach_outputs(self, self.options)
        self._count_sink_users()
        try:
            start = time.perf_counter()
            for stream in self.streams:
                stream.source.attach(self.stop, lambda kind, data, s=stream: self._source_event(s, kind, data))
                threads.append(self._thread(self._capture, stream, f"capture-{stream.name}"))
                threads.append(self._thread(self._render, stream, f"render-{stream.name}", start))
            self._guard(self._batch_loop)
            for thread in threads:
                while thread.is_alive():
                    thread.join(POLL_S)
        finally:
            for stream in self.streams:
                self._release_sinks(stream)
                stream.source.close()
                stream.stats.corrupt = stream.source.corrupt
                stream.stats.unread = stream.source.unread
                stream.stats.lost = stream.source.lost
                stream.stats.problem = getattr(stream.source, "problem", "")
        if self.errors:
            raise _as_fault(self.errors[0])
        return [stream.stats for stream in self.streams]

    # ---- threads -------------------------------------------------------------------------------
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

    def _source_event(self, stream: Stream, kind: str, data: dict) -> None:
        if kind == "source_online":
            stream.stats.outages += 1
            stream.stats.offline_s += float(data.get("offline_s", 0.0))
        self.emit(stream, kind, data)

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
                item = _Item(frame, self._decide(stream, frame))
                if item.done is not None:
                    item.buffer = self._get(stream.pool)
                    if item.buffer is None:
                        break
                    item.prepared = self.model.prepare(frame.image, item.buffer)
                stream.stats.frames_read += 1
                if not self._to_render(stream, item):
                    break
                if item.done is not None and not stream.inbox.put(item, self.abort):
                    break
                if limit is not None and stream.stats.frames_read >= limit:
                    break
        finally:
            stream.inbox.put(END, self.abort)  # live: replaces stale frames; a file drains what is queued
            self._put(stream.outbox, END)

    def _decide(self, stream: Stream, frame) -> bool:
        """Infer this frame? (Every frame when nothing schedules inference.)"""
        if self.scheduler is None:
            return True
        thumb = thumbnail(frame.image) if self.options.infer_on_change else None
        with self._schedule_lock:
            return self.scheduler.decide(stream.name, frame.timestamp, thumb)

    def _to_render(self, stream: Stream, item: _Item) -> bool:
        """Queue the frame for drawing, in capture order. A live source never waits for the render
        thread: a frame that finds its queue full is dropped. False when the run is aborted."""
        if not stream.source.live:
            return self._put(stream.outbox, item)
        try:
            stream.outbox.put_nowait(item)
        except queue.Full:
            stream.stats.dropped += 1
            if item.buffer is not None:
                stream.pool.put(item.buffer)
                item.buffer = None
            item.done = None  # never sent to inference
        return not self.abort.is_set()

    # ---- batching and inference: the calling thread ---------------------------------------------
    def _batch_loop(self) -> None:
        running = list(self.streams)
        turn = 0
        while running and not self.abort.is_set():
            taken, _ = self._collect(running, turn)  # an ended stream's END reached its render thread from capture
            if taken and not self.abort.is_set():
                turn += 1
                self._swap_model_if_asked()
                self._infer(taken)

    def _collect(self, running: list[Stream], turn: int) -> tuple[list, list]:
        """Wait for a batch (``BatchPolicy``): at most one frame per stream."""
        taken: list[tuple[Stream, _Item]] = []
        ended: list[Stream] = []
        first_at = None
        with self.ready:
            while not self.abort.is_set():
                self.turned = time.monotonic()
                for stream in self.policy.order(running, turn):
                    if not self.policy.room(len(taken)) or any(s is stream for s, _ in taken):
                        continue
                    item = stream.inbox.pop()
                    if item is END:
                        running.remove(stream)
                        ended.append(stream)
                    elif item is not None:
                        taken.append((stream, item))
                        first_at = first_at or time.perf_counter()
                now = time.perf_counter()
                if ended or self.policy.send_now(len(taken), len(running), first_at, now):
                    break
                self.ready.wait(self.policy.wait_s(first_at, now, POLL_S))
        return taken, ended

    def _swap_model_if_asked(self) -> None:
        with self._swap_lock:
            new, self._next_model = self._next_model, None
        if new is None:
            return
        old, self.model = self.model, new
        for stream in self.streams:
            stream.stats.models_reloaded += 1
            self.emit(stream, MODEL_RELOADED, {"previous_model": old.identity, "path": str(new.path or "")})
        old.close()

    def _infer(self, taken: list) -> None:
        for row, (stream, item) in enumerate(taken):
            self.batch[self.model.framing.rows(row)] = item.buffer
            stream.pool.put(item.buffer)
            item.buffer = None
        predictions = self.model.infer_prepared(self.batch, [item.prepared for _, item in taken])
        self.batches += 1
        if self.scheduler is not None:
            with self._schedule_lock:
                self.scheduler.observe(predictions[0].timings["inference_ms"] / 1000.0, len(taken))
        for (stream, item), prediction in zip(taken, predictions):
            prediction.index, prediction.timestamp = item.frame.index, item.frame.timestamp
            prediction.wall = item.frame.wall
            prediction.stream = None if len(self.streams) == 1 else stream.name
            item.finish(prediction)

    # ---- render: one thread per stream ---------------------------------------------------------
    def _render(self, stream: Stream, start: float) -> None:
        meter, last_e2e = RateMeter(), 0.0
        stream.render_thread = threading.current_thread()
        try:
            while True:
                item = self._get(stream.outbox)
                if item is None or item is END:
                    return
                if isinstance(item, Event):
                    for sink in stream.sinks:
                        sink.event(item)
                    continue
                prediction = self._prediction_for(stream, item)
                if prediction is None:
                    continue
                image = item.frame.image
                if self.options.overlay:
                    readout = (
                        f"{meter.rate:4.1f} fps  infer {stream.last.timings['inference_ms']:.1f} ms  "
                        f"e2e {last_e2e:.0f} ms"
                    )
                    self._draw(stream, image, prediction, readout)
                now = time.perf_counter()
                last_e2e = (now - item.frame.captured) * 1000.0
                prediction.timings["end_to_end_ms"] = last_e2e
                meter.tick(now)
                for sink in stream.sinks:
                    sink.write(image, prediction)
                while stream.raised:
                    event = stream.raised.pop(0)
                    for sink in stream.sinks:
                        sink.event(event)
                _count(stream.stats, prediction, last_e2e)
        finally:
            stream.stats.wall_s = time.perf_counter() - start
            if not self.abort.is_set():
                self._release_sinks(stream)  # this stream is done: its files are complete now
            else:  # let the batcher's last put go through
                while self._get(stream.outbox, wait=False) not in (None, END):
                    pass

    def _prediction_for(self, stream: Stream, item: _Item) -> Prediction | None:
        """The frame's own prediction once inferred, or the stream's newest one for a frame not
        inferred (or whose inference a newer frame replaced); None for a frame to skip (aborted, or
        nothing inferred yet)."""
        if item.done is not None:
            while not item.done.wait(POLL_S):
                if self.abort.is_set():
                    return None
            if item.prediction is not None:
                stream.last = item.prediction
                return item.prediction
        if stream.last is None:  # the stream's first inferred frame was dropped: nothing to draw with
            stream.stats.dropped += 1
            return None
        frame = item.frame
        return replace(
            stream.last,
            index=frame.index,
            timestamp=frame.timestamp,
            wall=frame.wall,
            inferred=False,
            timings={"preprocess_ms": None, "inference_ms": None, "batch_size": 0},
        )

    def _draw(self, stream: Stream, image: np.ndarray, prediction: Prediction, readout: str) -> None:
        settings = stream.controls.current()
        stream.smoother.factor = settings.smoothing
        probs = stream.smoother("probs", prediction.probs)
        smap = stream.smoother("map", prediction.raw_map) if settings.map else None
        self.model.framing.draw(image, probs, smap, prediction.geometry, settings.opacity, readout)

    # ---- sinks: each closed once, after the last stream that holds it ----------------------------
    def _count_sink_users(self) -> None:
        for stream in self.streams:
            for sink in stream.sinks:
                self._sink_users[id(sink)] = self._sink_users.get(id(sink), 0) + 1

    def _release_sinks(self, stream: Stream) -> None:
        sinks, stream.sinks = stream.sinks, []
        for sink in sinks:
            with self._sink_lock:
                self._sink_users[id(sink)] = left = self._sink_users.get(id(sink), 1) - 1
            if left <= 0:
                sink.close()

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


def _as_fault(exc: BaseException) -> BaseException:
    """A one-line error met while frames were flowing (a server that stopped answering, a back-end
    failure) ends the run as a fault (exit code 5), not as input refused before any work."""
    if isinstance(exc, RuntimeUserError) and type(exc) is RuntimeUserError:
        fault = RunFault(str(exc))
        fault.__cause__ = exc
        return fault
    return exc


def _named_sources(sources: list) -> list[tuple[str, Source]]:
    named = [s if isinstance(s, tuple) else (None, s) for s in sources]
    if not named:
        raise ValueError("a pipeline needs at least one source")
    return [(name or f"stream{i}", source) for i, (name, source) in enumerate(named)]


def _count(stats: RunStats, prediction: Prediction, end_to_end_ms: float) -> None:
    stats.frames_out += 1
    stats.end_to_end_ms.append(end_to_end_ms)
    if prediction.inferred:
        infer_ms = prediction.timings["inference_ms"]
        stats.inferred += 1
        stats.infer_ms.append(infer_ms)
        stats.infer_ms_total += infer_ms
        stats.batch_frames_total += prediction.timings["batch_size"]


def make_scheduler(options: PipelineOptions, streams: list[Stream]) -> InferenceScheduler | None:
    """The run's inference scheduler: live and real-time streams share what the box can infer;
    files read as fast as they decode are inferred every frame unless a rate is asked for."""
    adaptive = options.realtime or any(stream.source.live for stream in streams)
    if not (adaptive or options.infer_every or options.infer_fps or options.infer_on_change):
        return None
    scheduler = InferenceScheduler(change_threshold=options.infer_on_change, share_capacity=adaptive)
    for stream in streams:
        scheduler.add_stream(stream.name, infer_every=options.infer_every, infer_fps=options.infer_fps)
    return scheduler


def run_pipeline(model, source: Source, options: PipelineOptions | None = None) -> RunStats:
    """One source through ``Pipeline``: its one ``RunStats``."""
    return Pipeline(model, source, options).run()[0]
