"""Clients for the live-server tests, written on raw sockets and http.client (not on the server's
library), and a publisher that feeds a LiveServer frames whose JPEG content can be checked."""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

CLASSES = ("amusement", "anger", "awe")
ROOT = Path(__file__).resolve().parents[1]


def frame_value(index: int) -> int:
    """The grey level of frame ``index``: a decoded JPEG tells which frame it is."""
    return (index * 37) % 200 + 20


NOISE = np.random.default_rng(0).integers(-15, 16, (480, 640, 3)).astype(np.int16)


def make_frame(index: int, size=(96, 128)) -> np.ndarray:
    """A grey frame; large ones get fixed noise (mean ≈ 0), so that their JPEGs are large too."""
    if size[0] * size[1] <= 96 * 128:
        return np.full((*size, 3), frame_value(index), np.uint8)
    noise = NOISE[: size[0], : size[1]]
    return (noise + frame_value(index)).clip(0, 255).astype(np.uint8)


def make_record(index: int) -> dict:
    p = np.roll([0.6, 0.3, 0.1], index % 3)
    return {
        "index": index,
        "timestamp": round(index / 30, 4),
        "label": CLASSES[int(np.argmax(p))],
        "probabilities": dict(zip(CLASSES, map(float, p))),
        "inference_ms": 4.0,
        "end_to_end_ms": 20.0,
    }


class Publisher:
    """Publishes frames 0, 1, 2, … to ``server`` every ``period`` seconds in a thread, like the render thread."""

    def __init__(self, server, period: float = 0.01, stream: str = "0", size=(96, 128)) -> None:
        self.server, self.period, self.stream, self.size = server, period, stream, size
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            i = self.published
            self.server.publish(make_frame(i, self.size), make_record(i), stream=self.stream, dropped=i // 10)
            self.published += 1
            time.sleep(self.period)

    def __enter__(self) -> "Publisher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def get(url: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def post_json(url: str, payload, content_type: str = "application/json", headers: dict | None = None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        conn.request(
            "POST",
            parts.path + (f"?{parts.query}" if parts.query else ""),
            body=body,
            headers={"Content-Type": content_type, **(headers or {})},
        )
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def open_stream(url: str, headers: dict | None = None, rcvbuf: int | None = None) -> socket.socket:
    """A raw socket with a GET for ``url`` sent; the caller reads the reply at its own pace."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
    sock.settimeout(10)
    sock.connect((parts.hostname, parts.port))
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}\r\n".encode())
    return sock


class StreamReader:
    """Reads an HTTP response from a socket: the status line and headers, then MJPEG parts or SSE events."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self._raw, self.buffer = self.buffer, b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        out, _, self.buffer = self.buffer.partition(marker)
        return out

    def _body(self, n: int) -> bytes:
        """n bytes of the de-chunked body."""
        while len(self.buffer) < n:
            self._more_body()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _more_body(self) -> None:
        if not self.chunked:
            self.buffer += self._raw or self.sock.recv(65536) or _eof()
            self._raw = b""
            return
        while b"\r\n" not in self._raw:
            self._raw += self.sock.recv(65536) or _eof()
        size_line, _, rest = self._raw.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            raise EOFError("end of body")
        while len(rest) < size + 2:
            rest += self.sock.recv(65536) or _eof()
        self.buffer += rest[:size]
        self._raw = rest[size + 2 :]

    def _body_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._more_body()
        out, _, self.buffer = self.buffer.partition(marker)
        return out

    def part(self) -> tuple[dict, bytes]:
        """The next MJPEG part: its headers and JPEG bytes."""
        head = self._body_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        assert head[0].strip() == "--frame", head
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        jpeg = self._body(int(headers["content-length"]))
        assert self._body(2) == b"\r\n"
        return headers, jpeg

    def event(self) -> tuple[str, dict]:
        """The next SSE event: (name, JSON payload)."""
        name, data = "message", ""
        for line in self._body_until(b"\n\n").decode().split("\n"):
            key, _, value = line.partition(": ")
            if key == "event":
                name = value
            elif key == "data":
                data += value
        return name, json.loads(data)


def _eof():
    raise EOFError("server closed the connection")


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def metrics(url: str, headers: dict | None = None) -> dict:
    """/metrics parsed into {'name{labels}': value}; a key may name its labels in any order."""
    status, _, body = get(url + "metrics", headers)
    assert status == 200
    out = _Samples()
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class _Samples(dict):
    """Samples by their text key, with the labels sorted: the exposition format leaves their order free."""

    @staticmethod
    def canonical(key: str) -> str:
        name, brace, labels = key.partition("{")
        return f"{name}{{{','.join(sorted(labels.rstrip('}').split(',')))}}}" if brace else key

    def __setitem__(self, key, value) -> None:
        super().__setitem__(self.canonical(key), value)

    def __getitem__(self, key):
        return super().__getitem__(self.canonical(key))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def start_webcam(model, video, out: Path, token: str, *extra, outputs=None) -> tuple[subprocess.Popen, str]:
    """``cli.py webcam --serve 127.0.0.1:0`` (token from WSCNET_TOKEN) writing out/out.mp4 and
    out/out.jsonl (or the flags ``outputs``); ``video``: one source or a list of them; returns the
    process (its stderr lines gather in ``proc.log``) and the page URL."""
    sources = [a for v in (video if isinstance(video, list) else [video]) for a in ("--source", str(v))]
    if outputs is None:
        outputs = ["--save", str(out / "out.mp4"), "--jsonl", str(out / "out.jsonl")]
    cmd = [
        sys.executable,
        str(ROOT / "cli.py"),
        "webcam",
        "--model",
        str(model),
        *sources,
        "--no-display",
        "--threads",
        "1",
        *outputs,
        "--serve",
        "127.0.0.1:0",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSCNET_TOKEN": token, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # wait for the address (port 0: the system chose it)
        lines.append(line)
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        if found:
            threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
            proc.log = lines
            return proc, found.group(1)
    proc.wait()
    raise AssertionError("webcam --serve never said where it serves:\n" + "".join(lines))
