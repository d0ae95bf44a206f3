"""LiveServer: the pipeline's overlaid video, records and figures over HTTP, on aiohttp.

The server runs its own asyncio loop in a thread. The render thread calls ``publish`` once per
frame, which swaps references in a ``StreamHub`` and, only while someone watches, wakes one
dispatcher thread. The dispatcher encodes the newest frame once (OpenCV releases the GIL) and
hands the shared bytes to the loop; every viewer then sends the newest frame it has not sent yet,
so a slow viewer skips frames and nothing queues behind it.
"""

import asyncio
import concurrent.futures
import errno
import hmac
import ipaddress
import json
import socket
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import RuntimeUserError
from .controls import Controls, OverlaySettings
from .hub import JPEG_QUALITY, StreamHub
from .metrics import Exposition

try:
    from aiohttp import web
except ImportError:  # pragma: no cover - depends on the environment
    raise RuntimeUserError("--serve needs aiohttp: pip install -c constraints.txt -e '.[serve]'") from None

PAGE_DIR = Path(__file__).with_name("page")
BOUNDARY = "frame"
STATS_INTERVAL_S = 1.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# kernel send buffer per streaming viewer (Linux doubles it): a few frames in flight, not the
# megabytes autotuning allows, so a stalled viewer holds little and gets fresh frames when it reads
STREAM_SNDBUF = 256 * 1024
STREAM_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


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
    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 max_clients: int = 8, model_info: dict | None = None, streams=("0",),
                 controls: Controls | None = None, jpeg_quality: int = JPEG_QUALITY) -> None:
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
        self.controls = controls or Controls(OverlaySettings())
        self.hubs = {name: StreamHub(name, jpeg_quality) for name in streams}
        self._feeds: dict[str, _Feed] = {}
        self._stream_tasks: set[asyncio.Task] = set()
        self._page = _assemble_page()
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
        if self._watching:
            self._pending.set()

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
            raise RuntimeUserError(f"--serve {self.host}:{self.port}: {_bind_problem(exc)}") from None
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
        app = web.Application(middlewares=[self._authorise], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/info", self._info)
        app.router.add_get("/controls", self._get_controls)
        app.router.add_post("/controls", self._set_controls)
        app.router.add_get("/stream.mjpg", self._stream_mjpg)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.on_response_prepare.append(_harden_headers)
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
        print(f"serving {self.url} ({access}, at most {self.max_clients} viewers)", file=sys.stderr)
        if not self.token and not _is_loopback(self.host):
            print(f"warning: serving on {self.host} without --token: anyone who can reach this port "
                  "can watch; set --token or WSCNET_TOKEN", file=sys.stderr)

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
                    print(f"warning: live view, stream {feed.hub.name}: {exc}", file=sys.stderr)

    def _request_dispatch(self, feed: _Feed) -> None:
        feed.dispatched = -1  # hand out the newest frame again, even if the pipeline has paused
        self._pending.set()

    def _dispatch(self, feed: _Feed) -> None:
        seq, _, record = feed.hub.newest()
        if seq == feed.dispatched or record is None:
            return
        feed.dispatched = seq
        jpeg = feed.hub.jpeg() if feed.waiting["jpeg"] else None
        event = (seq, _sse("message", record)) if feed.waiting["event"] else None
        if jpeg is not None or event is not None:
            self._loop.call_soon_threadsafe(feed.announce, jpeg, event)

    # ---- access --------------------------------------------------------------------------------
    @web.middleware
    async def _authorise(self, request: web.Request, handler):
        if self.token and request.path != "/healthz" and not self._token_ok(request):
            return web.Response(status=401, text="401: missing or wrong token (Authorization: Bearer … or ?token=…)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="wscnet-edge"'})
        return await handler(request)

    def _token_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _feed_for(self, request: web.Request) -> _Feed:
        name = request.query.get("stream", next(iter(self._feeds)))
        if name not in self._feeds:
            raise web.HTTPNotFound(text=f"no stream {name!r}; streams: {', '.join(self._feeds)}\n")
        return self._feeds[name]

    # ---- routes --------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=self._page, content_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"model": self.model_info, "streams": list(self._feeds),
                                  "controls": self.controls.current().as_dict(), "max_clients": self.max_clients})

    async def _get_controls(self, request: web.Request) -> web.Response:
        return web.json_response(self.controls.current().as_dict())

    async def _set_controls(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":  # also keeps other sites' plain forms out
            raise web.HTTPUnsupportedMediaType(text="send the controls as application/json\n")
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object such as {\"opacity\": 0.5}")
            settings = self.controls.update(changes)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.json_response(settings.as_dict())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "frames": {name: hub.seq for name, hub in self.hubs.items()}})

    async def _snapshot(self, request: web.Request) -> web.Response:
        feed = self._feed_for(request)
        newest = await asyncio.get_running_loop().run_in_executor(None, feed.hub.jpeg)
        if newest is None:
            raise web.HTTPServiceUnavailable(text="no frame yet\n", headers={"Retry-After": "1"})
        seq, jpeg, index = newest
        return web.Response(body=jpeg, content_type="image/jpeg", headers=_frame_headers(seq, index))

    async def _stream_mjpg(self, request: web.Request) -> web.StreamResponse:
        feed = self._feed_for(request)
        response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        async with self._viewer(feed, "video", request, response):
            seq = 0
            while (newest := await feed.newer("jpeg", seq)) is not None:
                seq, jpeg, index = newest
                head = "".join(f"{k}: {v}\r\n" for k, v in _frame_headers(seq, index).items())
                await response.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n{head}\r\n".encode() + jpeg + b"\r\n")
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        feed = self._feed_for(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        loop = asyncio.get_running_loop()
        async with self._viewer(feed, "events", request, response):
            seq, next_stats = 0, 0.0
            while not feed.closing:
                if loop.time() >= next_stats:
                    await response.write(_sse("stats", self._stats(feed)))
                    next_stats = loop.time() + STATS_INTERVAL_S
                newest = await feed.newer("event", seq, timeout=max(next_stats - loop.time(), 0.01))
                if newest is not None:
                    seq, data = newest
                    await response.write(data)
        return response

    def _viewer(self, feed: _Feed, kind: str, request: web.Request, response: web.StreamResponse):
        return _ViewerSlot(self, feed, kind, request, response)

    def _stats(self, feed: _Feed) -> dict:
        stats = feed.hub.stats()
        del stats["inference_hist"], stats["end_to_end_hist"]
        stats["clients"] = dict(feed.clients)
        return stats

    async def _metrics(self, request: web.Request) -> web.Response:
        out = Exposition()
        for name, feed in self._feeds.items():
            _stream_metrics(out, f'stream="{name}"', feed)
        out.sample("wscnet_max_clients", "gauge", "Viewers allowed at once, per kind and stream.", "", self.max_clients)
        return web.Response(text=out.text(), headers={"Content-Type": Exposition.CONTENT_TYPE})


class _ViewerSlot:
    """Counts a streaming viewer in and out; 503 past --max-clients; a vanished viewer leaves quietly."""

    def __init__(self, server: LiveServer, feed: _Feed, kind: str, request: web.Request,
                 response: web.StreamResponse) -> None:
        self.server, self.feed, self.kind = server, feed, kind
        self.request, self.response = request, response

    async def __aenter__(self) -> None:
        feed, server = self.feed, self.server
        if feed.clients[self.kind] >= server.max_clients:
            feed.rejected[self.kind] += 1
            raise web.HTTPServiceUnavailable(
                text=f"{server.max_clients} viewers already watch ({self.kind}); try again later\n",
                headers={"Retry-After": "5"})
        feed.clients[self.kind] += 1
        server._watching += 1
        server._stream_tasks.add(asyncio.current_task())
        sock = self.request.transport.get_extra_info("socket") if self.request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        await self.response.prepare(self.request)

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self.feed.clients[self.kind] -= 1
        self.server._watching -= 1
        self.server._stream_tasks.discard(asyncio.current_task())
        # the viewer went away mid-stream, or the server is stopping: nothing to report
        return exc_type is not None and issubclass(exc_type, (ConnectionError, asyncio.CancelledError))


def _stream_metrics(out: Exposition, labels: str, feed: _Feed) -> None:
    stats = feed.hub.stats()
    out.sample("wscnet_frames_total", "counter", "Frames the pipeline published.", labels, stats["frames"])
    out.sample("wscnet_fps", "gauge", "Frames per second published (smoothed).", labels, stats["fps"])
    out.sample("wscnet_dropped_frames_total", "counter", "Live frames dropped before inference (newer ones replaced them).",
               labels, stats["dropped"])
    out.sample("wscnet_jpeg_encodes_total", "counter", "Frames encoded as JPEG (at most once each, only while watched).",
               labels, stats["jpeg_encodes"])
    out.add("wscnet_inference_seconds", "histogram", "Model inference time per frame.",
            stats["inference_hist"].lines("wscnet_inference_seconds", labels))
    out.add("wscnet_end_to_end_seconds", "histogram", "Capture to overlaid frame, per frame.",
            stats["end_to_end_hist"].lines("wscnet_end_to_end_seconds", labels))
    for kind in ("video", "events"):
        kind_labels = f'{labels},kind="{kind}"'
        out.sample("wscnet_clients", "gauge", "Viewers connected now.", kind_labels, feed.clients[kind])
        out.sample("wscnet_clients_rejected_total", "counter", "Viewers turned away with 503 (--max-clients).",
                   kind_labels, feed.rejected[kind])


def _frame_headers(seq: int, index) -> dict:
    return {"X-Frame-Seq": str(seq), "X-Frame-Index": "" if index is None else str(index)}


def _sse(event: str, payload: dict) -> bytes:
    """One Server-Sent Event; the default "message" event carries exactly one JSONL record."""
    data = json.dumps(payload, separators=(",", ":"))
    return (f"data: {data}\n\n" if event == "message" else f"event: {event}\ndata: {data}\n\n").encode()


async def _harden_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # a ?token= must not leak onwards


def _assemble_page() -> str:
    """index.html with its stylesheet and script inlined: one response, no asset routes, no CDN."""
    html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    style = (PAGE_DIR / "style.css").read_text(encoding="utf-8")
    script = (PAGE_DIR / "app.js").read_text(encoding="utf-8")
    return html.replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "port already in use (another server, or an earlier run still holding it)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    return f"cannot listen there ({exc.strerror or exc})"


def parse_address(spec: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:8080`` for IPv6) → (host, port); loopback when no host is given."""
    text = str(spec).strip()
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (":" in host and not text.startswith("[")):
        raise RuntimeUserError(f"--serve {spec!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080 or [::1]:8080")
    return host or "127.0.0.1", int(port)
