"""The live page's web application: routes, access, viewers and the page itself (aiohttp).

``build_app(server)`` makes the application for a ``LiveServer``; every handler reads the server's
feeds (the newest frame and records of each stream), its controls and its model information.
"""

import asyncio
import hmac
import json
import socket
from pathlib import Path

from aiohttp import web

from .metrics import CONTENT_TYPE

PAGE_DIR = Path(__file__).with_name("page")
BOUNDARY = "frame"
STATS_INTERVAL_S = 1.0
# kernel send buffer per streaming viewer (Linux doubles it): a few frames in flight, not the
# megabytes autotuning allows, so a stalled viewer holds little and gets fresh frames when it reads
STREAM_SNDBUF = 256 * 1024
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def build_app(server) -> web.Application:
    routes = Routes(server)
    app = web.Application(middlewares=[routes.authorise], client_max_size=64 * 1024)
    app.router.add_get("/", routes.index)
    app.router.add_get("/info", routes.info)
    app.router.add_get("/controls", routes.get_controls)
    app.router.add_post("/controls", routes.set_controls)
    app.router.add_post("/model/reload", routes.reload_model)
    app.router.add_get("/stream.mjpg", routes.stream_mjpg)
    app.router.add_get("/snapshot.jpg", routes.snapshot)
    app.router.add_get("/events", routes.events)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/metrics", routes.metrics)
    app.on_response_prepare.append(_harden_headers)
    return app


class Routes:
    def __init__(self, server) -> None:
        self.server = server
        self.page = _assemble_page()

    @web.middleware
    async def authorise(self, request: web.Request, handler):
        if self.server.token and request.path != "/healthz" and not self._token_ok(request):
            return web.Response(status=401, text="401: missing or wrong token (Authorization: Bearer … or ?token=…)\n",
                                headers={"WWW-Authenticate": 'Bearer realm="wscnet-edge"'})
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
        return web.json_response({"model": self.server.model_info, "streams": list(self.server.feeds()),
                                  "controls": self.server.controls.current().as_dict(), "max_clients": self.server.max_clients})

    async def get_controls(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.controls.current().as_dict())

    async def set_controls(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":  # also keeps other sites' plain forms out
            raise web.HTTPUnsupportedMediaType(text="send the controls as application/json\n")
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object such as {\"opacity\": 0.5}")
            settings = self.server.controls.update(changes)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return web.json_response(settings.as_dict())

    async def healthz(self, request: web.Request) -> web.Response:
        hubs = self.server.hubs.items()
        return web.json_response({"status": "ok", "frames": {name: hub.seq for name, hub in hubs},
                                  "online": {name: hub.online for name, hub in hubs}})

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
                head = "".join(f"{k}: {v}\r\n" for k, v in _frame_headers(seq, index).items())
                await response.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n{head}\r\n".encode() + jpeg + b"\r\n")
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

    def __init__(self, server, feed, kind: str, request: web.Request,
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


def _frame_headers(seq: int, index) -> dict:
    return {"X-Frame-Seq": str(seq), "X-Frame-Index": "" if index is None else str(index)}


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


