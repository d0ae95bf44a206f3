"""The live page's web application: routes, access, viewers and the page itself (aiohttp).

``build_app(server)`` makes the application for a ``LiveServer``; every handler reads the server's
feeds (the newest frame and records of each stream), its controls and its model information.
"""

import asyncio
import hmac
import json
import re
import socket
from pathlib import Path

import cv2
from aiohttp import web

from ..sinks.clips import CLIP_SUFFIX, list_clips
from .metrics import CONTENT_TYPE

PAGE_DIR = Path(__file__).with_name("page")
BOUNDARY = "frame"
STATS_INTERVAL_S = 1.0
ALL_STREAMS_INTERVAL_S = 0.1  # /events/all: each stream's newest record at most this often
CLIP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.(mp4|json|mjpg)$")
CLIP_FILE_TYPES = {"mp4": "video/mp4", "json": "application/json"}
# kernel send buffer per streaming viewer (Linux doubles it): a few frames in flight, not the
# megabytes autotuning allows, so a stalled viewer holds little and gets fresh frames when it reads
STREAM_SNDBUF = 256 * 1024
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


ROUTES = (  # method, path, the Routes method that answers
    ("GET", "/", "index"),
    ("GET", "/info", "info"),
    ("GET", "/controls", "get_controls"),
    ("POST", "/controls", "set_controls"),
    ("POST", "/model/reload", "reload_model"),
    ("GET", "/stream.mjpg", "stream_mjpg"),
    ("GET", "/snapshot.jpg", "snapshot"),
    ("GET", "/events", "events"),
    ("GET", "/events/all", "events_all"),
    ("GET", "/clips", "clips"),
    ("GET", "/clips/{name}", "clip_file"),
    ("GET", "/healthz", "healthz"),
    ("GET", "/metrics", "metrics"),
)


def build_app(server) -> web.Application:
    routes = Routes(server)
    app = web.Application(middlewares=[routes.authorise], client_max_size=64 * 1024)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, getattr(routes, handler))
    app.on_response_prepare.append(_harden_headers)
    return app


class Routes:
    def __init__(self, server) -> None:
        self.server = server
        self.page = _assemble_page()

    @web.middleware
    async def authorise(self, request: web.Request, handler):
        if self.server.token and request.path != "/healthz" and not self._token_ok(request):
            return web.Response(
                status=401,
                text="401: missing or wrong token (Authorization: Bearer … or ?token=…)\n",
                headers={"WWW-Authenticate": 'Bearer realm="wscnet-edge"'},
            )
        return await handler(request)

    def _token_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _feed_for(self, request: web.Request):
        name = request.query.get("stream", next(iter(self.server.feeds())))
        if name not in self.server.feeds():
            raise web.HTTPNotFound(text=f"no stream {name!r}; streams: {', '.join(self.server.feeds())}\n")
        return self.server.feeds()[name]

    # ---- routes --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=self.page, content_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model": self.server.model_info,
                "streams": list(self.server.feeds()),
                "controls": self.server.controls.current().as_dict(),
                "max_clients": self.server.max_clients,
            }
        )

    async def get_controls(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.controls.current().as_dict())

    async def set_controls(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":  # also keeps other sites' plain forms out
            raise web.HTTPUnsupportedMediaType(text="send the controls as application/json\n")
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError('expected a JSON object such as {"opacity": 0.5}')
            settings = self.server.controls.update(changes)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.json_response(settings.as_dict())

    async def healthz(self, request: web.Request) -> web.Response:
        hubs = self.server.hubs.items()
        return web.json_response(
            {
                "status": "ok",
                "frames": {name: hub.seq for name, hub in hubs},
                "online": {name: hub.online for name, hub in hubs},
            }
        )

    async def reload_model(self, request: web.Request) -> web.Response:
        """Load the model file again (after it was replaced), check it and swap it in; 409 with the
        reason when the new file is refused (the old model keeps running)."""
        if self.server.on_reload is None:
            raise web.HTTPNotFound(text="this server runs no pipeline whose model can be reloaded\n")
        loop = asyncio.get_running_loop()
        problem = await loop.run_in_executor(None, self.server.on_reload)
        if problem:
            return web.json_response({"status": "refused", "reason": problem}, status=409)
        return web.json_response({"status": "reloaded"})

    async def snapshot(self, request: web.Request) -> web.Response:
        feed = self._feed_for(request)
        newest = await asyncio.get_running_loop().run_in_executor(None, feed.hub.jpeg)
        if newest is None:
            raise web.HTTPServiceUnavailable(text="no frame yet\n", headers={"Retry-After": "1"})
        seq, jpeg, index = newest
        return web.Response(body=jpeg, content_type="image/jpeg", headers=_frame_headers(seq, index))

    async def stream_mjpg(self, request: web.Request) -> web.StreamResponse:
        feed = self._feed_for(request)
        response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        async with self._viewer(feed, "video", request, response):
            seq = 0
            while (newest := await feed.newer("jpeg", seq)) is not None:
                seq, jpeg, index = newest
                await response.write(_mjpeg_part(seq, index, jpeg))
        return response

    async def events(self, request: web.Request) -> web.StreamResponse:
        feed = self._feed_for(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        loop = asyncio.get_running_loop()
        async with self._viewer(feed, "events", request, response):
            seq, next_stats, told = 0, 0.0, feed.hub.events_seq()
            while not feed.closing:
                if loop.time() >= next_stats:
                    await response.write(sse("stats", self._stats(feed)))
                    next_stats = loop.time() + STATS_INTERVAL_S
                newest = await feed.newer("event", seq, timeout=max(next_stats - loop.time(), 0.01))
                if newest is not None:
                    seq, data = newest
                    await response.write(data)
                for told, event in feed.hub.events_after(told):
                    await response.write(sse(event["event"], event))
        return response

    async def events_all(self, request: web.Request) -> web.StreamResponse:
        """Every stream on one SSE connection (the mosaic page): each stream's newest record (with its
        ``stream``) at most every ``ALL_STREAMS_INTERVAL_S``, every event, and each stream's stats."""
        feeds = self.server.feeds()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        loop = asyncio.get_running_loop()
        async with self._viewer(next(iter(feeds.values())), "events", request, response):
            shown = dict.fromkeys(feeds, 0)
            told = {name: feed.hub.events_seq() for name, feed in feeds.items()}
            next_stats = 0.0
            while not any(feed.closing for feed in feeds.values()):
                for name, feed in feeds.items():
                    await self._send_newest(response, name, feed, shown, told)
                    if loop.time() >= next_stats:
                        await response.write(sse("stats", self._stats(feed)))
                if loop.time() >= next_stats:
                    next_stats = loop.time() + STATS_INTERVAL_S
                await asyncio.sleep(ALL_STREAMS_INTERVAL_S)
        return response

    async def _send_newest(self, response, name: str, feed, shown: dict, told: dict) -> None:
        seq, _, record = feed.hub.newest()
        if record is not None and seq != shown[name]:
            shown[name] = seq
            await response.write(sse("message", {**record, "stream": name}))
        for told[name], event in feed.hub.events_after(told[name]):
            await response.write(sse(event["event"], event))

    def _clips_dir(self) -> Path | None:
        folder = getattr(self.server, "clips_dir", None)
        return Path(folder) if folder is not None else None

    async def clips(self, request: web.Request) -> web.Response:
        folder = self._clips_dir()
        found = [] if folder is None else await asyncio.get_running_loop().run_in_executor(None, list_clips, folder)
        return web.json_response({"clips": found})

    async def clip_file(self, request: web.Request) -> web.StreamResponse:
        """``NAME.mp4`` or ``NAME.json``: the file; ``NAME.mjpg``: the clip played as MJPEG at its own
        frame rate (every browser shows that in an <img>, whatever codecs it has)."""
        name, folder = request.match_info["name"], self._clips_dir()
        match = CLIP_NAME.match(name)
        path = None if folder is None or match is None else folder / name
        kind = match.group(1) if match else ""
        video = path.with_suffix(CLIP_SUFFIX) if path is not None else None
        if video is None or not video.is_file() or (kind == "json" and not path.is_file()):
            raise web.HTTPNotFound(text=f"no clip {name!r}\n")
        if kind != "mjpg":
            return web.FileResponse(path, headers={"Content-Type": CLIP_FILE_TYPES[kind]})
        return await self._play_clip(request, video)

    async def _play_clip(self, request: web.Request, video: Path) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        capture = await loop.run_in_executor(None, cv2.VideoCapture, str(video))
        response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        await response.prepare(request)
        try:
            period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 15.0)
            index = 0
            while (jpeg := await loop.run_in_executor(None, _next_jpeg, capture)) is not None:
                await response.write(_mjpeg_part(index, index, jpeg))
                index += 1
                await asyncio.sleep(period)
        except ConnectionError:
            pass
        finally:
            capture.release()
        return response

    def _viewer(self, feed, kind: str, request: web.Request, response: web.StreamResponse):
        return _ViewerSlot(self.server, feed, kind, request, response)

    def _stats(self, feed) -> dict:
        stats = feed.hub.stats()
        stats["clients"] = dict(feed.clients)
        return stats

    async def metrics(self, request: web.Request) -> web.Response:
        body = self.server.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class _ViewerSlot:
    """Counts a streaming viewer in and out; 503 past --max-clients; a vanished viewer leaves quietly."""

    def __init__(self, server, feed, kind: str, request: web.Request, response: web.StreamResponse) -> None:
        self.server, self.feed, self.kind = server, feed, kind
        self.request, self.response = request, response

    async def __aenter__(self) -> None:
        feed, server = self.feed, self.server
        if feed.clients[self.kind] >= server.max_clients:
            feed.rejected[self.kind] += 1
            raise web.HTTPServiceUnavailable(
                text=f"{server.max_clients} viewers already watch ({self.kind}); try again later\n",
                headers={"Retry-After": "5"},
            )
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


def _frame_headers(seq: int, index) -> dict:
    return {"X-Frame-Seq": str(seq), "X-Frame-Index": "" if index is None else str(index)}


def _mjpeg_part(seq: int, index, jpeg: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in _frame_headers(seq, index).items())
    start = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n{head}\r\n"
    return start.encode() + jpeg + b"\r\n"


def _next_jpeg(capture) -> bytes | None:
    ok, frame = capture.read()
    if not ok:
        return None
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return encoded.tobytes() if ok else None


def sse(event: str, payload: dict) -> bytes:
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
