"""What serving the live view costs the pipeline: fps with ``--serve`` and 0, 1, 4 and 20 viewers,
and with one viewer that reads a byte a second, against the same run without ``--serve``.

    python cli.py benchmark serve-cost [--model M.onnx] [--video V.mp4] [--frames 150] [--rounds 3]

All conditions run in one process, interleaved round by round (the order rotates each round), so
a shared machine's changing load hits every condition alike; each round's fps is divided by that
round's no-serve fps, and the median ratio is reported, with process CPU time per frame beside it
(what serving adds in work, whatever the load). Viewers are separate processes on this machine
(``watch`` in a child process), reading MJPEG as fast as they can: their own CPU use competes with the pipeline
here, which a remote browser's would not, so the figures are on the pessimistic side.
"""

import json
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from runtime.backends import open_backend
from runtime.pipeline import Pipeline, PipelineOptions
from runtime.serve import LiveServer, model_info
from runtime.serve.attach import LiveSink
from runtime.sources import open_source

from .video_pipeline import DEFAULT_WORKDIR, default_int8_model, test_video_for

CONDITIONS = (
    ("no serve", None, False),
    ("serve, 0 viewers", 0, False),
    ("serve, 1 viewer", 1, False),
    ("serve, 4 viewers", 4, False),
    ("serve, 20 viewers", 20, False),
    ("serve, 1 slow viewer (1 byte/s)", 1, True),
)
TARGET_ONE_VIEWER = 0.90  # fps with one viewer, as a share of fps without --serve
SLOW_RCVBUF = 2048


# ---- viewers: a separate process, like a browser elsewhere -------------------------------------
def watch(url: str, viewers: int, slow: bool) -> None:
    """Open ``viewers`` MJPEG connections and read them (fast, or one byte a second) until SIGTERM;
    then print {"parts": frames received per viewer} as JSON."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sockets = [_request(url, SLOW_RCVBUF if slow else None) for _ in range(viewers)]
    print("ready", flush=True)
    seen = {s: 0 for s in sockets}
    tails = {s: b"" for s in sockets}
    selector = selectors.DefaultSelector()
    for s in sockets:
        s.setblocking(slow)
        if not slow:
            selector.register(s, selectors.EVENT_READ)
    while not stop:
        if slow:
            for s in sockets:
                s.recv(1)
            time.sleep(1.0)
            continue
        for key, _ in selector.select(timeout=0.2):
            data = tails[key.fileobj] + key.fileobj.recv(1 << 18)
            seen[key.fileobj] += data.count(b"X-Frame-Seq: ")
            tails[key.fileobj] = data[-16:].replace(b"X-Frame-Seq: ", b"")
    print(json.dumps({"parts": list(seen.values())}), flush=True)


def _request(url: str, rcvbuf: int | None) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    return sock


class Viewers:
    """``n`` viewers in a child process for the duration of a ``with`` block."""

    def __init__(self, url: str, n: int, slow: bool) -> None:
        self.url, self.n, self.slow = url, n, slow
        self.parts: list[int] = []

    def __enter__(self) -> "Viewers":
        self.proc = None
        if self.n:
            code = f"from benchmarks.serve_cost import watch; watch({self.url!r}, {self.n}, {self.slow})"
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1]
            )
            assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=30)
            self.parts = json.loads(out.strip().splitlines()[-1])["parts"] if out.strip() else []


# ---- the measurement ---------------------------------------------------------------------------
def measure_serve_cost(
    model_path,
    video_path,
    *,
    frames: int = 150,
    rounds: int = 3,
    threads: int = 1,
    out_dir: Path = DEFAULT_WORKDIR / "serve-run",
) -> dict:
    backend = open_backend(model_path, device="cpu", threads=threads)
    server = LiveServer(port=0, max_clients=32, model_info=model_info(backend.metadata, backend.description))
    server.start()
    rows = {name: {"fps": [], "cpu_ms": [], "parts": [], "encodes": []} for name, _, _ in CONDITIONS}
    try:
        _run(backend, video_path, None, min(frames, 30), out_dir)  # warm-up
        for r in range(rounds):
            order = CONDITIONS[r % len(CONDITIONS) :] + CONDITIONS[: r % len(CONDITIONS)]
            for name, viewers, slow in order:
                live = server if viewers is not None else None
                encodes = server.hubs["0"].jpeg_encodes
                with Viewers(server.url + "stream.mjpg?stream=0", viewers or 0, slow) as watching:
                    time.sleep(0.3)  # connected and waiting before the first frame
                    stats, cpu_ms = _run(backend, video_path, live, frames, out_dir)
                row = rows[name]
                row["fps"].append(stats["fps"])
                row["cpu_ms"].append(cpu_ms)
                row["parts"].append(float(np.mean(watching.parts)) if watching.parts else 0.0)
                row["encodes"].append((server.hubs["0"].jpeg_encodes - encodes) / max(stats["frames_out"], 1))
        description = backend.description
    finally:
        server.stop()
        backend.close()
    return _summarise(rows, model_path, video_path, frames, rounds, threads, description)


def _run(backend, video_path, live, frames: int, out_dir: Path) -> tuple[dict, float]:
    options = PipelineOptions(
        save=out_dir / "overlay.mp4", jsonl=out_dir / "frames.jsonl", display=False, progress=False, max_frames=frames
    )
    pipeline = Pipeline(backend, open_source(str(video_path)), options)
    if live is not None:  # what webcam --serve attaches (runtime/serve/attach.py)
        pipeline.streams[0].sinks.append(LiveSink(live, pipeline.streams[0], "0"))
    cpu = time.process_time()
    stats = pipeline.run().as_dict()
    return stats, (time.process_time() - cpu) * 1000.0 / max(stats["frames_out"], 1)


def _summarise(rows: dict, model_path, video_path, frames, rounds, threads, description) -> dict:
    base_fps, base_cpu = np.array(rows["no serve"]["fps"]), np.array(rows["no serve"]["cpu_ms"])
    table = []
    for name, viewers, slow in CONDITIONS:
        row = rows[name]
        fps, cpu = np.array(row["fps"]), np.array(row["cpu_ms"])
        table.append(
            {
                "condition": name,
                "viewers": viewers or 0,
                "slow": slow,
                "fps_median": round(float(np.median(fps)), 1),
                "fps_ratio": round(float(np.median(fps / base_fps)), 3),
                "fps_ratio_rounds": [round(float(v), 3) for v in fps / base_fps],
                "cpu_ms_per_frame": round(float(np.median(cpu)), 2),
                "cpu_ratio": round(float(np.median(cpu / base_cpu)), 3),
                "frames_per_viewer": round(float(np.median(row["parts"])), 1),
                "jpeg_encodes_per_frame": round(float(np.median(row["encodes"])), 3),
            }
        )
    one = next(t for t in table if t["condition"] == "serve, 1 viewer")
    return {
        "model": str(model_path),
        "video": str(video_path),
        "backend": description,
        "threads": threads,
        "frames": frames,
        "rounds": rounds,
        "rows": table,
        "one_viewer_cost_pct": round(100 * (1 - one["fps_ratio"]), 1),
        "meets_10pct_one_viewer": one["fps_ratio"] >= TARGET_ONE_VIEWER,
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| condition | fps (median) | × no-serve fps | CPU ms/frame | × no-serve CPU | frames per viewer | JPEG encodes per frame |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in result["rows"]:
        lines.append(
            f"| {t['condition']} | {t['fps_median']:.1f} | {t['fps_ratio']:.3f} | {t['cpu_ms_per_frame']:.2f} | "
            f"{t['cpu_ratio']:.3f} | {t['frames_per_viewer']:.0f} | {t['jpeg_encodes_per_frame']:.2f} |"
        )
    return "\n".join(lines)


def print_serve_cost(
    model: Path | None, video: Path | None, *, frames: int, threads: int, workdir: Path, rounds: int
) -> dict:
    """``python cli.py benchmark serve-cost``: the Markdown table, then the JSON."""
    result = measure_serve_cost(
        model or default_int8_model(workdir),
        test_video_for(video, workdir, frames),
        frames=frames,
        rounds=rounds,
        threads=threads,
        out_dir=workdir / "serve-run",
    )
    print(markdown_table(result))
    print(json.dumps(result, indent=2))
    return result
