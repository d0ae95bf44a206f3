"""Real services on loopback for the event outputs' tests and benchmark: a Mosquitto broker (Debian's
``mosquitto`` binary) and an HTTP receiver of webhooks (aiohttp), both on 127.0.0.1 only."""

import asyncio
import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """``mosquitto -c FILE`` on 127.0.0.1:``port``, anonymous, with persistence in ``folder`` (so a
    restarted broker still holds retained messages and the queued messages of persistent sessions).
    ``tls``: also listen for TLS on ``tls_port``, with a self-signed certificate for 127.0.0.1
    written to ``folder`` (``cert``: the file a client trusts as its CA)."""

    def __init__(self, folder: Path, port: int | None = None, tls: bool = False) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("the mosquitto broker is not installed (apt-get install mosquitto)")
        self.folder, self.port = Path(folder), port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "mosquitto.conf"
        text = (  # ``user``: started as root, mosquitto would switch to its own user, who cannot read folder
            f"user {getpass.getuser()}\nper_listener_settings false\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\nlog_dest file {self.folder}/broker.log\n"
            f"listener {self.port} 127.0.0.1\n"
        )
        self.tls_port, self.cert = (free_port(), self_signed_certificate(self.folder)) if tls else (None, None)
        if tls:
            key = self.folder / "broker.key"
            text += f"listener {self.tls_port} 127.0.0.1\ncertfile {self.cert}\nkeyfile {key}\n"
        self.config.write_text(text)
        self.process: subprocess.Popen | None = None

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        if self.tls_port is not None:
            wait_for_port(self.tls_port)
        return self

    def stop(self) -> None:
        """A clean stop (SIGTERM): the broker saves what it holds, as a service manager stops it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def self_signed_certificate(folder: Path) -> Path:
    """``broker.crt`` / ``broker.key`` in ``folder``: a one-day self-signed certificate for 127.0.0.1."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert


class WebhookReceiver:
    """An aiohttp server in a thread that keeps every POST it gets (headers, JSON body, raw body).
    ``mode``: ``ok`` (204), ``fail`` (500 to every request) or ``hang`` (never answers)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[tuple[dict, dict, bytes]] = []
        self.attempts = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request):
        from aiohttp import web

        self.attempts += 1
        body = await request.read()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "fail":
            return web.Response(status=500)
        self.received.append((dict(request.headers), json.loads(body), body))
        return web.Response(status=204)

    def _serve(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def close():
            await self._runner.cleanup()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
