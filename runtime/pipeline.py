"""Capture → inference → overlay/writing, overlapped in three threads joined by bounded queues.

- capture thread: reads frames and pre-processes them into buffers from a fixed pool;
- calling thread: runs the back-end (ONNX Runtime and TensorRT release the GIL meanwhile);
- render thread: smoothing, overlay, video / window / JSONL.

A live source keeps only the newest frame (a stale one waiting for inference is dropped); a file
is processed in order, every frame. Ctrl-C (SIGINT) or SIGTERM stops capture; what is queued is
drained and the sinks are closed, so the video plays and the JSONL is complete. The queues and the
buffer pool are bounded, so memory stays flat however long the run.
"""

import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .backends.base import Backend
from .overlay import Overlay
from .preprocess import Preprocessor
from .sinks import JsonlSink, VideoSink, WindowSink, display_available
from .smoothing import EmaSmoother
from .sources import Source

END = object()  # end of stream marker passed down the queues
POLL_S = 0.05
LATENCY_WINDOW = 4096  # recent latencies kept for percentiles: bounded, memory stays flat


@dataclass
class PipelineOptions:
    resize: str | None = None  # None: the model's input contract; else a geometry that overrides it
    smooth: float = 0.0  # EMA factor for the overlay's probabilities and map, in [0, 1)
    alpha: float = 0.45  # opacity of the sentiment map
    save: Path | None = None
    jsonl: Path | None = None
    display: bool | None = None  # None: a window when a display exists
    overlay: bool = True
    progress: bool = True
    max_frames: int | None = None
    queue_size: int = 2


@dataclass
class RunStats:
    source: str = ""
    backend: str = ""
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

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict:
        def pct(values, q):
            return round(float(np.percentile(values, q)), 3) if values else None

        return {
            "source": self.source, "backend": self.backend,
            "frames_read": self.frames_read, "frames_out": self.frames_out, "dropped": self.dropped,
            "corrupt": self.corrupt, "unread": self.unread, "interrupted": self.interrupted,
            "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 2),
            "infer_ms_mean": round(self.infer_ms_total / self.frames_out, 3) if self.frames_out else None,
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
    __slots__ = ("frame", "buffer", "geometry", "probs", "sentiment_map", "infer_ms")

    def __init__(self, frame, buffer, geometry) -> None:
        self.frame, self.buffer, self.geometry = frame, buffer, geometry
        self.probs = self.sentiment_map = None
        self.infer_ms = 0.0


class Pipeline:
    def __init__(self, backend: Backend, source: Source, options: PipelineOptions | None = None) -> None:
        self.backend = backend
        self.source = source
        self.options = options or PipelineOptions()
        meta = backend.metadata
        self.class_names = list(meta.class_names)
        self.pre = Preprocessor(meta.contract_for(self.options.resize))
        self.overlay = Overlay(self.class_names, self.options.alpha)
        self.smoother = EmaSmoother(self.options.smooth)
        self.stop = threading.Event()  # graceful: stop reading, finish what is queued
        self.abort = threading.Event()  # a thread failed: everyone leaves at once
        self.errors: list[BaseException] = []
        self.stats = RunStats(source=source.description, backend=backend.description)

    # ---- the run -------------------------------------------------------------------------------
    def run(self) -> RunStats:
        opts = self.options
        slots = opts.queue_size + 2  # one being filled, queue_size waiting, one being inferred
        self.pool: queue.Queue = queue.Queue()
        for _ in range(slots):
            self.pool.put(self.pre.new_buffer())
        self.inbox: queue.Queue = queue.Queue(maxsize=opts.queue_size)
        self.outbox: queue.Queue = queue.Queue(maxsize=opts.queue_size)
        sinks: dict = {}
        restore = self._install_signal_handlers()
        start = time.perf_counter()
        try:
            sinks = self._open_sinks()
            threads = [threading.Thread(target=self._guard, args=(self._capture,), name="capture", daemon=True),
                       threading.Thread(target=self._guard, args=(self._render, sinks), name="render", daemon=True)]
            for thread in threads:
                thread.start()
            self._guard(self._infer)
            for thread in threads:
                while thread.is_alive():
                    thread.join(POLL_S)
        finally:
            self.stats.wall_s = time.perf_counter() - start
            restore()
            self._close_sinks(sinks)
            self.source.close()
        self.stats.corrupt = self.source.corrupt
        self.stats.unread = self.source.unread
        if self.errors:
            raise self.errors[0]
        return self.stats

    def _guard(self, work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # re-raised by run() in the calling thread
            self.errors.append(exc)
            self.abort.set()
            self.stop.set()

    # ---- threads -------------------------------------------------------------------------------
    def _capture(self) -> None:
        live = self.source.live
        limit = self.options.max_frames
        try:
            for frame in self.source.frames():
                if self.stop.is_set():
                    break
                buffer = self._get(self.pool)
                if buffer is None:
                    break
                item = _Item(frame, buffer, self.pre(frame.image, buffer))
                self.stats.frames_read += 1
                if live:
                    self._put_newest(item)
                elif not self._put(self.inbox, item):
                    break
                if limit is not None and self.stats.frames_read >= limit:
                    break
        finally:
            # a file drains what is queued, even after Ctrl-C; a live source needs no stale frames
            if live:
                self._put_newest(END)
            else:
                self._put(self.inbox, END, force=True)

    def _infer(self) -> None:
        while True:
            item = self._get(self.inbox)
            if item is None or item is END:
                self._put(self.outbox, END, force=True)
                return
            t0 = time.perf_counter()
            outputs = self.backend.infer(item.buffer)
            item.infer_ms = (time.perf_counter() - t0) * 1000.0
            self.pool.put(item.buffer)
            item.buffer = None
            item.probs = outputs["probs"][0]
            item.sentiment_map = outputs["sentiment_map"][0, 0]
            if not self._put(self.outbox, item):
                return

    def _render(self, sinks: dict) -> None:
        stats, opts = self.stats, self.options
        video, jsonl = sinks.get("video"), sinks.get("jsonl")
        window = WindowSink() if sinks.get("window") else None
        bar = tqdm(total=self.source.frame_count, unit="frame", file=sys.stderr,
                   disable=not opts.progress, leave=False)
        fps, last, last_e2e = 0.0, None, 0.0
        try:
            while True:
                item = self._get(self.outbox)
                if item is None or item is END:
                    return
                frame = item.frame
                image = frame.image
                if opts.overlay:
                    probs = self.smoother("probs", item.probs)
                    smap = self.smoother("map", item.sentiment_map)
                    readout = f"{fps:4.1f} fps  infer {item.infer_ms:.1f} ms  e2e {last_e2e:.0f} ms"
                    self.overlay.draw(image, probs, smap, item.geometry, readout)
                if video is not None:
                    video.write(image)
                if window is not None:
                    window.write(image)
                    if window.closed and window.available:
                        self.stop.set()  # q / Esc
                now = time.perf_counter()
                last_e2e = (now - frame.captured) * 1000.0
                if last is not None:
                    fps = 0.9 * fps + 0.1 / max(now - last, 1e-6) if fps else 1.0 / max(now - last, 1e-6)
                last = now
                if jsonl is not None:
                    jsonl.write(self._record(item, last_e2e))
                stats.frames_out += 1
                stats.infer_ms.append(item.infer_ms)
                stats.infer_ms_total += item.infer_ms
                stats.end_to_end_ms.append(last_e2e)
                bar.update(1)
        finally:
            bar.close()
            if window is not None:
                window.close()
            if self.abort.is_set():  # let the inference thread's last put go through
                while self._get(self.outbox, wait=False) not in (None, END):
                    pass

    def _record(self, item: _Item, end_to_end_ms: float) -> dict:
        probs = item.probs
        return {
            "index": item.frame.index,
            "timestamp": round(item.frame.timestamp, 4),
            "label": self.class_names[int(np.argmax(probs))],
            "probabilities": {name: round(float(p), 6) for name, p in zip(self.class_names, probs)},
            "inference_ms": round(item.infer_ms, 3),
            "end_to_end_ms": round(end_to_end_ms, 3),
        }

    # ---- queues that give up when the run is aborted -------------------------------------------
    def _get(self, q: queue.Queue, wait: bool = True):
        while True:
            try:
                return q.get(timeout=POLL_S) if wait else q.get_nowait()
            except queue.Empty:
                if self.abort.is_set() or not wait:
                    return None

    def _put(self, q: queue.Queue, item, force: bool = False) -> bool:
        while True:
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.abort.is_set():
                    if not force:
                        return False
                    self._get(q, wait=False)  # make room: nobody will process it anyway

    def _put_newest(self, item) -> None:
        """Live sources: replace a frame still waiting for inference by the newer one."""
        while True:
            try:
                self.inbox.put_nowait(item)
                return
            except queue.Full:
                try:
                    stale = self.inbox.get_nowait()
                except queue.Empty:
                    continue
                if stale is END:
                    continue
                self.pool.put(stale.buffer)
                self.stats.dropped += 1

    # ---- sinks and signals ---------------------------------------------------------------------
    def _open_sinks(self) -> dict:
        opts, sinks = self.options, {}
        try:
            if opts.save is not None:
                size = (self.source.width, self.source.height)
                sinks["video"] = VideoSink(opts.save, self.source.fps, size)
            if opts.jsonl is not None:
                sinks["jsonl"] = JsonlSink(opts.jsonl)
        except BaseException:
            for sink in sinks.values():
                sink.discard()
            raise
        sinks["window"] = display_available() if opts.display is None else opts.display
        return sinks

    @staticmethod
    def _close_sinks(sinks: dict) -> None:
        for sink in sinks.values():
            if hasattr(sink, "close"):
                sink.close()

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def request_stop(signum, _frame) -> None:
            if not self.stop.is_set():
                print("\nstopping: finishing the frames in flight and closing the files…", file=sys.stderr)
            self.stats.interrupted = True
            self.stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def run_pipeline(backend: Backend, source: Source, options: PipelineOptions | None = None) -> RunStats:
    return Pipeline(backend, source, options).run()
