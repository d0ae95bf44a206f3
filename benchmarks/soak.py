"""Soak: the runtime left running against a network camera that keeps going away.

``python cli.py benchmark soak --model M.onnx --minutes 30`` runs ``webcam`` as a real process
against a loopback MJPEG camera (``benchmarks.camera_sim``) that goes down for ``--outage`` seconds
every ``--every`` seconds, with segmented recording under a small disk budget. It reports frames in
and out, frames lost (outside and around outages), outages caused and seen, memory at the start and
the end, segments written, deleted and playable, and whether every JSONL line parses; it writes
``soak.json`` and ``soak.md`` into ``--out``.
"""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from runtime.sinks import read_records
from runtime.videoio import playable

from .camera_sim import MjpegCamera

REPO = Path(__file__).resolve().parents[1]
WARM_UP_S = 30.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_soak(
    model: Path, out: Path, minutes: float, every_s: float, outage_s: float, fps: float, segment_s: float, max_disk: str
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    camera = MjpegCamera(fps=fps, size=(640, 480)).start()
    records, stderr_path = out / "frames.jsonl", out / "webcam.log"
    command = [
        sys.executable,
        str(REPO / "cli.py"),
        "webcam",
        "--model",
        str(model),
        "--source",
        camera.url,
        "--no-display",
        "--threads",
        "1",
        "--jsonl",
        str(records),
        "--save",
        str(out / "rec" / "cam.mp4"),
        "--segment",
        str(segment_s),
        "--max-disk",
        max_disk,
    ]
    with open(stderr_path, "w") as log:
        run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        schedule = _drive_camera(camera, run, minutes * 60.0, every_s, outage_s)
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=120)
    camera.stop()
    return _report(out, records, stderr_path, camera, schedule, code)


def _drive_camera(camera: MjpegCamera, run: subprocess.Popen, total_s: float, every_s: float, outage_s: float) -> dict:
    """Unplug the camera for ``outage_s`` every ``every_s`` seconds; sample the run's memory."""
    start = time.monotonic()
    schedule = {"outages": [], "rss_mb": [], "sent_before": []}
    next_outage = start + every_s
    while time.monotonic() - start < total_s and run.poll() is None:
        now = time.monotonic()
        if now >= next_outage and now + outage_s < start + total_s:
            schedule["sent_before"].append(camera.sent)
            camera.stop()
            down = time.time()
            time.sleep(outage_s)
            camera.start()
            schedule["outages"].append([down, time.time()])
            next_outage += every_s
        if now - start >= WARM_UP_S and not schedule["rss_mb"]:
            schedule["rss_mb"].append(rss_mb(run.pid))
        time.sleep(0.5)
    schedule["rss_mb"].append(rss_mb(run.pid))
    schedule["wall_s"] = time.monotonic() - start
    return schedule


def _report(out: Path, records: Path, stderr_path: Path, camera: MjpegCamera, schedule: dict, code: int) -> dict:
    lines = records.read_text(encoding="utf-8").splitlines()
    frames, events = read_records(records, "frames"), read_records(records, "events")
    read_count = (max(r["index"] for r in frames) + 1) if frames else 0
    segments = sorted((out / "rec").glob("cam-*.mp4"))
    stderr = stderr_path.read_text()
    deleted = sum(int(n) for n in re.findall(r"disk budget: deleted (\d+)", stderr))
    result = {
        "minutes": round(schedule["wall_s"] / 60.0, 2),
        "exit_code": code,
        "camera_frames_sent": camera.sent,
        "frames_read": read_count,
        "frames_out": len(frames),
        "frames_dropped_stale": read_count - len(frames),
        "frames_lost": camera.sent - read_count,
        "outages_caused": len(schedule["outages"]),
        "outages_seen": sum(1 for e in events if e["event"] == "source_online"),
        "offline_events": sum(1 for e in events if e["event"] == "source_offline"),
        "mean_offline_s": _mean([e["offline_s"] for e in events if e["event"] == "source_online"]),
        "rss_mb_start": schedule["rss_mb"][0],
        "rss_mb_end": schedule["rss_mb"][-1],
        "segments_kept": len(segments),
        "segments_deleted": deleted,
        "segments_playable": sum(playable(s) for s in segments),
        "jsonl_lines": len(lines),
        "jsonl_lines_parsed": len(frames) + len(events),
        "tracebacks": stderr.count("Traceback"),
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "soak.md").write_text(
        "| measure | value |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in result.items())
    )
    return result


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def soak(
    model: Path = typer.Option(..., "--model", help="Exported .onnx model the runtime runs"),
    out: Path = typer.Option(
        Path("bench-results/soak"), "--out", help="Folder for soak.json/.md, the JSONL and recordings"
    ),
    minutes: float = typer.Option(30.0, "--minutes", min=0.5, help="How long the runtime runs"),
    every: float = typer.Option(120.0, "--every", min=5.0, help="Seconds between the starts of two outages"),
    outage: float = typer.Option(20.0, "--outage", min=1.0, help="Seconds the camera stays away each time"),
    fps: float = typer.Option(15.0, "--fps", min=1.0, help="The camera's frame rate"),
    segment: float = typer.Option(10.0, "--segment", min=1.0, help="Seconds of video per recorded file"),
    max_disk: str = typer.Option("40MB", "--max-disk", help="Disk budget of the recordings"),
) -> None:
    """Leave the runtime running against a camera that goes away every few minutes; report what survived."""
    result = run_soak(model, out, minutes, every, outage, fps, segment, max_disk)
    print((out / "soak.md").read_text(), end="")
    if result["exit_code"] != 0 or result["tracebacks"]:
        raise typer.Exit(3)
