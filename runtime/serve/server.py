"""LiveServer: the pipeline's overlaid video, records and figures over HTTP, on aiohttp.

The server runs its own asyncio loop in a thread. The render thread calls ``publish`` once per
frame, which swaps references in a ``StreamHub`` and, only while someone watches, wakes one
dispatcher thread. The dispatcher encodes the newest frame once (OpenCV releases the GIL) and
hands the shared bytes to the loop; every viewer then sends the newest frame it has not sent yet,
so a slow viewer skips frames and nothing queues behind it.
"""

import asyncio
import concurrent.futures
import threading
from typing import Callable

import numpy as np
from aiohttp import web

from ..controls import Controls
from ..errors import RuntimeUserError, log
from .address import bind_problem, is_loopback
from .app import build_app, sse
from .hub import JPEG_QUALITY, StreamHub
from .metrics import ServerMetrics

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
STREAM_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class _Feed:
    """Loop-side view of one stream: the newest JPEG and event, and who is waiting for them."""

    def __init__(self, hub: StreamHub, request_dispatch) -> None:
        self.hub = hub
        self.request_dispatch = request_dispatch  # wakes the dispatcher thread for this feed
        self.jpeg: tuple | None = None  # (seq, bytes, frame index)
        self.event: tuple | None = None  # (seq, SSE data bytes)
        self.clients = {"video": 0, "events": 0}
        self.waiting = {"jpeg": 0, "event": 0}  # viewers ready for their next item (not stuck in a write)
        self.rejected = {"video": 0, "events": 0}
        self.dispatched = 0  # written by the dispatcher thread only
        self.closing = False
        self._changed = asyncio.Event()

    def announce(self, jpeg: tuple | None, event: tuple | None) -> None:
        if jpeg is not None:
            self.jpeg = jpeg
        if event is not None:
            self.event = event
        self.wake()

    def wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def newer(self, kind: str, after: int, timeout: float | None = None):
        """The newest ``kind`` ("jpeg" or "event") item after seq ``after``; None on timeout or close.
        Frames are encoded for viewers who wait here, so one stuck in a slow write costs no encoding."""
        self.waiting[kind] += 1
        try:
            item = getattr(self, kind)
            if (item[0] if item else 0) < self.hub.seq:  # a newer frame than any handed out: ask for it
                self.request_dispatch(self)
            while not self.closing:
                item = getattr(self, kind)
                if item is not None and item[0] > after:
                    return item
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except asyncio.TimeoutError:
                    return None
            return None
        finally:
            self.waiting[kind] -= 1


class LiveServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str | None = None,
        max_clients: int = 8,
        model_info: dict | None = None,
        streams=("0",),
        controls: Controls | None = None,
        jpeg_quality: int = JPEG_QUALITY,
    ) -> None:
        if not 0 <= int(port) <= 65535:
            raise RuntimeUserError(f"--serve: port must be 0-65535, got {port}")
        if int(max_clients) < 1:
            raise RuntimeUserError(f"--max-clients must be at least 1, got {max_clients}")
        if token is not None and not token.strip():
            raise RuntimeUserError("--token is empty; give a secret, or leave the option out")
        streams = [str(s) for s in streams]
        if not streams or any(not s or len(s) > 32 or set(s) - STREAM_ID_CHARS for s in streams):
            raise ValueError(f"stream ids must be 1-32 characters of [A-Za-z0-9_.-], got {streams}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        self.host, self.port = host, int(port)
        self.token = token
        self.max_clients = int(max_clients)
        self.model_info = dict(model_info or {})
        self.controls = controls or Controls()
        self.hubs = {name: StreamHub(name, jpeg_quality) for name in streams}
        self.metrics = ServerMetrics(self)
        self.on_reload: Callable[[], str | None] | None = None  # POST /model/reload: None or the refusal
        self.output_counters: Callable[[], dict] = dict  # {stream: {output: {what: count}}} for /metrics
        self._feeds: dict[str, _Feed] = {}
        self._stream_tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._pending = threading.Event()  # a frame to hand out, or a new viewer
        self._watching = 0  # viewers + event listeners, all streams: publish wakes nobody when 0
        self._stopping = False

    # ---- what the pipeline calls -------------------------------------------------------------
    def publish(self, frame: np.ndarray, record: dict, stream: str = "0", dropped: int | None = None) -> None:
        """Newest overlaid BGR frame and its JSONL record; ``frame`` must not be changed afterwards."""
        self.hubs[stream].publish(frame, record, dropped)
        inference_ms = record.get("inference_ms")
        self.metrics.observe(
            stream,
            None if inference_ms is None else float(inference_ms) / 1000.0,
            float(record.get("end_to_end_ms") or 0.0) / 1000.0,
        )
        if self._watching:
            self._pending.set()

    def publish_event(self, event: dict, stream: str = "0") -> None:
        """One event (``Event.to_dict()``) of ``stream``: to ``/events`` listeners, ``/metrics`` and the page."""
        self.hubs[stream].publish_event(event)
        feed = self._feeds.get(stream)
        if feed is not None and self._loop is not None and not self._stopping:
            self._loop.call_soon_threadsafe(feed.wake)

    def feeds(self) -> dict:
        return self._feeds

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> "LiveServer":
        """Bind and serve in the background; RuntimeUserError (exit 2) when the address cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("LiveServer already started")
        self._loop = asyncio.new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="live-server", daemon=True)
        self._thread.start()
        try:
            self.port = started.result(timeout=START_TIMEOUT_S)
        except OSError as exc:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None
            raise RuntimeUserError(f"--serve {self.host}:{self.port}: {bind_problem(exc)}") from None
        self._dispatcher = threading.Thread(target=self._dispatch_forever, name="live-dispatch", daemon=True)
        self._dispatcher.start()
        self._announce_address()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; safe to call twice."""
        if self._thread is None or self._stopping:
            return
        self._stopping = True
        self._pending.set()
        self._loop.call_soon_threadsafe(self._begin_close)
        self._thread.join(STOP_TIMEOUT_S + 5)
        self._dispatcher.join(STOP_TIMEOUT_S)

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the loop thread ---------------------------------------------------------------------
    def _serve(self, started: concurrent.futures.Future) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            runner, port = loop.run_until_complete(self._open())
        except BaseException as exc:  # handed to start() in the caller's thread
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(port)
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    async def _open(self):
        self._feeds = {name: _Feed(hub, self._request_dispatch) for name, hub in self.hubs.items()}
        app = build_app(self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner, runner.addresses[0][1]

    def _begin_close(self) -> None:
        for feed in self._feeds.values():
            feed.closing = True
            feed.wake()
        for task in list(self._stream_tasks):  # a stalled viewer may sit in a write: cut it off
            task.cancel()
        self._loop.stop()

    def _announce_address(self) -> None:
        access = "token required" if self.token else "no token"
        log.info(f"serving {self.url} ({access}, at most {self.max_clients} viewers)")
        if not self.token and not is_loopback(self.host):
            log.warning(
                f"serving on {self.host} without --token: anyone who can reach this port "
                "can watch; set --token or WSCNET_TOKEN"
            )

    # ---- the dispatcher thread ---------------------------------------------------------------
    def _dispatch_forever(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            if self._stopping:
                return
            for feed in self._feeds.values():
                try:
                    self._dispatch(feed)
                except Exception as exc:  # one bad frame must not end the stream
                    log.warning(f"live view, stream {feed.hub.name}: {exc}")

    def _request_dispatch(self, feed: _Feed) -> None:
        feed.dispatched = -1  # hand out the newest frame again, even if the pipeline has paused
        self._pending.set()

    def _dispatch(self, feed: _Feed) -> None:
        seq, _, record = feed.hub.newest()
        if seq == feed.dispatched or record is None:
            return
        feed.dispatched = seq
        jpeg = feed.hub.jpeg() if feed.waiting["jpeg"] else None
        event = (seq, sse("message", record)) if feed.waiting["event"] else None
        if jpeg is not None or event is not None:
            self._loop.call_soon_threadsafe(feed.announce, jpeg, event)

    # ---- access --------------------------------------------------------------------------------
