"""A network camera on loopback that can be unplugged: an MJPEG-over-HTTP server (the format cheap IP
cameras speak) whose frames carry their number, stopped and started at will. The soak benchmark
and the reconnection tests point the runtime at it."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "camframe"


def camera_frame(number: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A changing scene with ``number`` written on it (BGR, width × height = ``size``)."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    x = (number * 7) % max(width - 60, 1)
    cv2.rectangle(frame, (x, height // 4), (x + 60, height // 4 + 80), (40 + number % 200, 120, 220), -1)
    cv2.putText(frame, str(number), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return frame


class MjpegCamera:
    """``start()`` serves ``http://127.0.0.1:PORT/stream.mjpg`` at ``fps``; ``stop()`` cuts every viewer
    off and closes the port, as an unplugged camera; ``start()`` again comes back on the same port."""

    def __init__(self, port: int = 0, fps: float = 15.0, size: tuple[int, int] = (320, 240)) -> None:
        self.fps, self.size, self.port = fps, size, port
        self.sent = 0
        self.outages = 0
        self._server: ThreadingHTTPServer | None = None
        self._live = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> "MjpegCamera":
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._live.set()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._live.clear()
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        self.outages += 1

    def _handler(self):
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                camera._stream(self.wfile, self.connection)

        return Handler

    def _stream(self, out, connection: socket.socket) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        try:
            while self._live.is_set():
                ok, jpeg = cv2.imencode(".jpg", camera_frame(self.sent, self.size))
                part = jpeg.tobytes()
                out.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(part)}\r\n\r\n".encode()
                    + part
                    + b"\r\n"
                )
                out.flush()
                self.sent += 1
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError, OSError):
            return
        finally:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
