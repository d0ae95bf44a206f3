"""Decode cost per frame of an H.264 file: OpenCV's FFmpeg path against the GStreamer path of
``runtime.gst`` (a gst-launch-1.0 child, avdec_h264 — or nvv4l2decoder where it exists — then
BGR frames through a pipe), on the same 640×480 and 1280×720 clips, timed interleaved in one run.

The clips are made here with x264enc (gstreamer1.0-plugins-ugly): a textured scene panning as a
camera would, H.264 main profile without B-frames at a camera-like bit rate, unless ``--video``
gives files to measure. Each timed call decodes the whole file to BGR frames; the table gives,
after the first frame, the wall time per frame and the CPU time per frame (this process and the
GStreamer child together: decoder, colour conversion, pipe), then the time to the first frame
(for GStreamer: starting gst-launch and negotiating) and the whole call.
"""

import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import cpu_model
from benchmarks.measure import summarise, time_interleaved

SIZES = ((640, 480), (1280, 720))
BITRATE_KBPS = {640: 1500, 1280: 3000}  # what an IP camera streams at these sizes
PAN_PX = (3, 1)  # per frame, x and y


@dataclass
class Row:
    clip: str
    path: str
    frames: int
    wall_ms_per_frame: float  # after the first frame; median over the rounds
    cpu_ms_per_frame: float  # the same span: this process and the GStreamer child
    first_frame_ms: float  # opening the file (and starting gst-launch) to the first frame
    whole_file_ms: float  # the timed call: open, every frame, close
    wall_vs_opencv: float  # against the OpenCV row of the same clip
    cpu_vs_opencv: float
    max_mean_abs_diff: float  # against OpenCV's frames, 0-255 levels (first and last frame)


# ---- the clips -------------------------------------------------------------------------------------
def panning_frames(width: int, height: int, frames: int, seed: int = 0):
    """A textured, coloured scene the camera pans across, with a little sensor noise."""
    rng = np.random.default_rng(seed)
    span_w, span_h = width + PAN_PX[0] * frames, height + PAN_PX[1] * frames
    coarse = rng.integers(0, 256, (span_h // 24 + 2, span_w // 24 + 2, 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (span_h // 4 + 2, span_w // 4 + 2, 1), dtype=np.uint8)
    scene = cv2.resize(coarse, (span_w, span_h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    scene += (cv2.resize(fine, (span_w, span_h), interpolation=cv2.INTER_CUBIC).astype(np.int16) - 128)[..., None] // 4
    noise = [rng.normal(0, 2, (height, width, 1)).astype(np.int16) for _ in range(4)]
    for i in range(frames):
        x, y = PAN_PX[0] * i, PAN_PX[1] * i
        yield np.clip(scene[y : y + height, x : x + width] + noise[i % 4], 0, 255).astype(np.uint8)


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """An H.264 .mp4 (x264enc, main profile, no B-frames); kept and reused when it exists."""
    if path.is_file():
        return path
    from runtime.errors import RuntimeUserError
    from runtime.gst import element_exists

    if not element_exists("x264enc"):
        raise RuntimeUserError(
            "decode-cost makes its clips with GStreamer's x264enc (apt install gstreamer1.0-plugins-ugly); "
            "or give H.264 files with --video"
        )
    partial = path.with_suffix(".partial.mp4")
    encode_h264(
        partial, panning_frames(width, height, frames), (width, height), fps, bitrate=BITRATE_KBPS.get(width, 3000)
    )
    partial.replace(path)
    return path


def encode_h264(
    path: Path, frames, size: tuple[int, int], fps: int, preset: str = "superfast", key_int: int = 60, bitrate=None
) -> Path:
    """BGR ``frames`` of ``size`` (w, h) piped into gst-launch's x264enc (no B-frames, main profile)
    and muxed into the .mp4 ``path``."""
    width, height = size
    encoder = ["x264enc", f"speed-preset={preset}", "bframes=0", f"key-int-max={key_int}"]
    encoder += [f"bitrate={bitrate}"] if bitrate else []
    caps = [f"width={width}", f"height={height}", "format=bgr", f"framerate={fps}/1"]
    command = ["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "rawvideoparse", *caps, "!", "videoconvert", "!"]
    command += ["video/x-raw,format=I420", "!", *encoder, "!", "video/x-h264,profile=main", "!", "mp4mux", "!"]
    command += ["filesink", f"location={path}"]
    with subprocess.Popen(command, stdin=subprocess.PIPE) as process:
        assert process.stdin is not None
        for frame in frames:
            process.stdin.write(frame.tobytes())
        process.stdin.close()
    if process.returncode != 0:
        raise RuntimeError(f"x264enc failed on {path} (exit code {process.returncode})")
    return path


# ---- the decode paths ------------------------------------------------------------------------------
@dataclass
class Decoded:
    frames: int = 0
    first_ms: float = 0.0  # from opening the file to the first frame
    steady_ms: float = 0.0  # from the first frame to the last
    steady_cpu_ms: float = 0.0  # CPU time over the same span, this process and the GStreamer child
    first: np.ndarray | None = None
    last: np.ndarray | None = None


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _running_child_cpu(pid: int | None) -> float:
    """CPU seconds a running child has used so far (/proc/PID/stat utime + stime)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _decode_all(frames, close: Callable[[], None], child_pid: Callable[[], int | None], start: float) -> Decoded:
    """Every frame of ``frames``; the span after the first frame is timed apart from the opening."""
    result, image = Decoded(), None
    first_time = first_cpu = 0.0
    reaped = _reaped_children_cpu()
    for image in frames:
        if result.frames == 0:
            first_time, result.first = time.perf_counter(), image
            first_cpu = _own_cpu() + _running_child_cpu(child_pid())
        result.frames += 1
    end = time.perf_counter()
    close()  # reaps the GStreamer child, whose whole CPU time then shows in RUSAGE_CHILDREN
    result.first_ms, result.steady_ms = (first_time - start) * 1e3, (end - first_time) * 1e3
    result.steady_cpu_ms = (_own_cpu() + _reaped_children_cpu() - reaped - first_cpu) * 1e3
    result.last = image
    return result


def decode_opencv(path: Path) -> Decoded:
    start = time.perf_counter()
    capture = cv2.VideoCapture(str(path))

    def frames():
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image

    return _decode_all(frames(), capture.release, lambda: None, start)


def decode_gstreamer(path: Path, decoder: str) -> Decoded:
    from runtime.sources import open_source

    start = time.perf_counter()
    source = open_source(str(path), decoder=decoder)
    return _decode_all(
        (frame.image for frame in source.frames()),
        source.close,
        lambda: source.process.proc.pid if source.process.proc else None,
        start,
    )


def decode_paths() -> dict[str, Callable[[Path], Decoded]]:
    """OpenCV, GStreamer's software decoder, and nvv4l2decoder where this machine has it."""
    from runtime.gst import resolve_decoder

    paths = {"opencv-ffmpeg": decode_opencv, "gstreamer-avdec": lambda p: decode_gstreamer(p, "cpu")}
    if resolve_decoder("auto", "h264") == "nvdec":
        paths["gstreamer-nvdec"] = lambda p: decode_gstreamer(p, "nvdec")
    return paths


# ---- the run ---------------------------------------------------------------------------------------
def measure_clip(clip: Path, rounds: int) -> list[Row]:
    paths = decode_paths()
    results: dict[str, list[Decoded]] = {name: [] for name in paths}

    def call(name: str):
        return lambda: results[name].append(paths[name](clip))

    whole = time_interleaved({name: call(name) for name in paths}, warmup=1, rounds=rounds)
    reference = results["opencv-ffmpeg"][-1]
    rows = []
    for name, runs in results.items():
        timed = runs[1:]  # the warm-up call is not timed
        per_frame = max(timed[-1].frames - 1, 1)
        rows.append(
            Row(
                clip=clip.name,
                path=name,
                frames=timed[-1].frames,
                wall_ms_per_frame=float(np.median([r.steady_ms for r in timed])) / per_frame,
                cpu_ms_per_frame=float(np.median([r.steady_cpu_ms for r in timed])) / per_frame,
                first_frame_ms=float(np.median([r.first_ms for r in timed])),
                whole_file_ms=summarise(whole[name])["median"],
                wall_vs_opencv=0.0,
                cpu_vs_opencv=0.0,
                max_mean_abs_diff=_difference(timed[-1], reference),
            )
        )
    for row in rows:
        row.wall_vs_opencv = row.wall_ms_per_frame / rows[0].wall_ms_per_frame
        row.cpu_vs_opencv = row.cpu_ms_per_frame / rows[0].cpu_ms_per_frame
    return rows


def _difference(ours: Decoded, reference: Decoded) -> float:
    pairs = [(ours.first, reference.first), (ours.last, reference.last)]
    if any(a is None or b is None or a.shape != b.shape for a, b in pairs):
        return float("nan")
    return max(float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) for a, b in pairs)


def markdown(rows: list[Row]) -> str:
    header = (
        "| clip | decode path | frames | wall ms/frame | CPU ms/frame | wall, CPU vs OpenCV | first frame ms "
        "| whole file ms | mean abs diff vs OpenCV |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.clip} | {r.path} | {r.frames} | {r.wall_ms_per_frame:.2f} | {r.cpu_ms_per_frame:.2f} | "
            f"{r.wall_vs_opencv:.2f}×, {r.cpu_vs_opencv:.2f}× | {r.first_frame_ms:.0f} | "
            f"{r.whole_file_ms:.0f} | {r.max_mean_abs_diff:.2f} |"
        )
    return "\n".join(lines)


def run_decode_cost(videos: list[Path], frames: int, rounds: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    clips = videos or [make_clip(workdir / f"pan-{w}x{h}-{frames}.mp4", w, h, frames) for w, h in SIZES]
    rows = [row for clip in clips for row in measure_clip(clip, rounds)]
    from runtime.gst import gstreamer_version

    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "os": platform.platform(),
        "opencv": cv2.__version__,
        "gstreamer": gstreamer_version(),
    }
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "rounds": rounds,
        "rows": [asdict(r) for r in rows],
        "markdown": markdown(rows),
    }


def print_decode_cost(videos: list[Path], frames: int, rounds: int, workdir: Path, json_out: Path | None) -> dict:
    """``python cli.py benchmark decode-cost``: the table on stdout, after one line naming the machine."""
    result = run_decode_cost(videos, frames, rounds, workdir)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(
        f"{result['date']}, {m['cpu']} ({m['cores']} cores, load {m['load_avg_1m_start']}), OpenCV {m['opencv']}, "
        f"{m['gstreamer']}, {rounds} rounds"
    )
    print(result["markdown"])
    return result
