"""Several 640×480 30 fps streams through one model: the runtime's batched pipeline against one
inference call per frame and against the model's own batched throughput, in one run.

    python cli.py benchmark multistream [--model M.onnx] [--streams 1,2,4,8] [--frames 150] [--threads 1]

Without ``--model`` it makes the reference case, an INT8 (Q/DQ) resnet18 at 224 px with a
dynamic batch (``benchmarks.video_pipeline.default_int8_model``). For each stream count N, in
``--rounds`` alternating rounds:

- model only: ``backend.infer`` on N pre-processed frames at once (``benchmarks.measure.time_calls``),
  in images/s — what the model does with batches of N and nothing else;
- files, batched: N copies of the test video through the whole pipeline (decode, pre-process,
  inference, overlay, one mp4 + JSONL per stream), ``batch_size=N``: aggregate frames/s;
- files, one call per frame: the same with ``batch_size=1``;
- live (``--live-seconds``): N sources paced at 30 fps like cameras (newest frame kept, late frames
  dropped): how many streams are held in real time (≤ 5 % of frames dropped) and their
  end-to-end latency p50 / p95 (capture → frame written; files queue every frame, so their
  latency is queueing, not responsiveness).

Resident memory is sampled every 0.25 s during every run. Prints Markdown tables, then the JSON.
"""

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from runtime.api import Model
from runtime.pipeline import Pipeline, PipelineOptions
from runtime.sources import Frame, Source, open_source

from .measure import summarise, time_calls
from .video_pipeline import default_int8_model, read_frames, rss_mb, test_video_for

STREAM_FPS = 30.0
MAX_DROP = 0.05  # a live stream that loses more than this share of its frames is not held


class PacedSource(Source):
    """A video file delivered like a camera: one frame every 1/fps s of wall time, marked live;
    the first one ``delay`` seconds after the pipeline asks (cameras that did not start together)."""

    live = True

    def __init__(self, path: Path, fps: float = STREAM_FPS, seconds: float = 5.0, delay: float = 0.0) -> None:
        self.inner = open_source(str(path))
        self.description = f"paced {path.name}"
        self.fps, self.width, self.height = fps, self.inner.width, self.inner.height
        self.limit = int(seconds * fps)
        self.delay = float(delay)

    def frames(self):
        time.sleep(self.delay)
        start = time.perf_counter()
        for i, frame in enumerate(self.inner.frames()):
            if i >= self.limit:
                return
            due = start + i / self.fps
            time.sleep(max(due - time.perf_counter(), 0.0))
            now = time.perf_counter()
            yield Frame(i, now - start, frame.image, now, time.time())

    def close(self) -> None:
        self.inner.close()


class RssSampler:
    """Resident MB every ``period`` s in a background thread, between start() and stop()."""

    def __init__(self, period: float = 0.25) -> None:
        self.period, self.samples, self._done = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.samples.append(rss_mb())
            self._done.wait(self.period)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.samples.append(rss_mb())


def model_only(model: Model, frames: list[np.ndarray], batch: int, iters: int) -> dict:
    """Images/s of ``backend.infer`` on batches of ``batch`` pre-processed frames, and its process
    CPU ms per image (what the machine's load does not distort)."""
    tensor = model.framing.new_batch(batch)
    for row in range(batch):
        model.prepare(frames[row % len(frames)], tensor, row)
    cpu = time.process_time()
    latencies, _ = time_calls(model.backend, tensor, warmup=2, iters=iters)
    cpu_ms = (time.process_time() - cpu) * 1000.0 / ((iters + 2) * batch)
    return {"images_per_s": round(batch * 1000.0 / summarise(latencies)["mean"], 2), "cpu_ms": round(cpu_ms, 3)}


def run_streams(model: Model, sources: list[Source], batch_size: int, out_dir: Path | None) -> dict:
    options = PipelineOptions(
        display=False,
        progress=False,
        batch_size=batch_size,
        save=out_dir / "{stream}.mp4" if out_dir else None,
        jsonl=out_dir / "{stream}.jsonl" if out_dir else None,
    )
    named = [(f"s{i}", s) for i, s in enumerate(sources)]
    with RssSampler() as rss:
        started, cpu = time.perf_counter(), time.process_time()
        stats = [s.as_dict() for s in Pipeline(model, named, options).run()]
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    frames = sum(s["frames_out"] for s in stats)
    read = sum(s["frames_read"] for s in stats)
    return {
        "streams": len(sources),
        "batch_size": batch_size,
        "frames": frames,
        "wall_s": round(wall, 3),
        "aggregate_fps": round(frames / wall, 2),
        "cpu_ms_per_frame": round(cpu * 1000.0 / max(frames, 1), 3),
        "stream_fps": [s["fps"] for s in stats],
        "dropped_share": [round(s["dropped"] / max(s["frames_read"], 1), 4) for s in stats],
        "drop_share_total": round(sum(s["dropped"] for s in stats) / max(read, 1), 4),
        "batch_size_mean": round(float(np.mean([s["batch_size_mean"] or 0 for s in stats])), 2),
        "end_to_end_ms_p50": [s["end_to_end_ms_p50"] for s in stats],
        "end_to_end_ms_p95": [s["end_to_end_ms_p95"] for s in stats],
        "rss_mb": {
            "start": rss.samples[0],
            "max": max(rss.samples),
            "end": rss.samples[-1],
            "series": rss.samples[:: max(1, len(rss.samples) // 10)],
        },
    }


def measure_streams(
    model: Model, video: Path, n: int, rounds: int, live_seconds: float, out_dir: Path, model_iters: int
) -> dict:
    sample = read_frames(video, 8)
    result = {"streams": n, "model_only": [], "batched": [], "per_frame": [], "live": None}
    for _ in range(rounds):
        result["model_only"].append(model_only(model, sample, n, model_iters))
        result["batched"].append(run_streams(model, [open_source(str(video)) for _ in range(n)], n, out_dir))
        result["per_frame"].append(run_streams(model, [open_source(str(video)) for _ in range(n)], 1, out_dir))
    if live_seconds > 0:
        live = [PacedSource(video, STREAM_FPS, live_seconds) for _ in range(n)]
        result["live"] = run_streams(model, live, n, out_dir)
    return summarise_streams(result)


def summarise_streams(result: dict) -> dict:
    """Medians over rounds; each ratio from figures of one round."""
    batched = [r["aggregate_fps"] for r in result["batched"]]
    per_frame = [r["aggregate_fps"] for r in result["per_frame"]]
    model_only = [r["images_per_s"] for r in result["model_only"]]
    model_cpu = [r["cpu_ms"] for r in result["model_only"]]
    batched_cpu = [r["cpu_ms_per_frame"] for r in result["batched"]]
    result["summary"] = {
        "model_only_images_per_s": float(np.median(model_only)),
        "model_only_cpu_ms": float(np.median(model_cpu)),
        "batched_cpu_ms_per_frame": float(np.median(batched_cpu)),
        "per_frame_cpu_ms_per_frame": float(np.median([r["cpu_ms_per_frame"] for r in result["per_frame"]])),
        "batched_fps": float(np.median(batched)),
        "per_frame_fps": float(np.median(per_frame)),
        "batched_over_per_frame": round(float(np.median([b / p for b, p in zip(batched, per_frame)])), 3),
        "batched_share_of_model": round(float(np.median([b / m for b, m in zip(batched, model_only)])), 3),
        "streams_held_capacity": int(np.median(batched) // STREAM_FPS),
    }
    live = result["live"]
    if live:
        held = sum(share <= MAX_DROP for share in live["dropped_share"])
        result["summary"].update(
            {
                "live_streams_held": held,
                "live_end_to_end_ms_p50": round(float(np.median(live["end_to_end_ms_p50"])), 1),
                "live_end_to_end_ms_p95": round(float(max(live["end_to_end_ms_p95"])), 1),
            }
        )
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| streams | model only, batch N (img/s) | pipeline batched (fps) | one call per frame (fps) | "
        "batched ÷ per frame | batched ÷ model | CPU ms/frame: model / batched / per frame | "
        "30-fps streams: capacity / held live | live e2e p50 / p95 ms | RSS start → max → end MB |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        rss = [x["rss_mb"] for x in r["batched"] + r["per_frame"] + ([r["live"]] if r["live"] else [])]
        held = f"{s['streams_held_capacity']} / {s.get('live_streams_held', '–')} of {r['streams']}"
        e2e = f"{s.get('live_end_to_end_ms_p50', '–')} / {s.get('live_end_to_end_ms_p95', '–')}"
        lines.append(
            f"| {r['streams']} | {s['model_only_images_per_s']:.1f} | {s['batched_fps']:.1f} | {s['per_frame_fps']:.1f} | "
            f"{s['batched_over_per_frame']:.2f} | {s['batched_share_of_model']:.2f} | "
            f"{s['model_only_cpu_ms']:.1f} / {s['batched_cpu_ms_per_frame']:.1f} / {s['per_frame_cpu_ms_per_frame']:.1f} | "
            f"{held} | {e2e} | "
            f"{rss[0]['start']:.0f} → {max(x['max'] for x in rss):.0f} → {rss[-1]['end']:.0f} |"
        )
    return "\n".join(lines)


def print_multistream(
    model_path: Path | None,
    video: Path | None,
    *,
    frames: int,
    threads: int,
    workdir: Path,
    streams: list[int],
    rounds: int,
    live_seconds: float,
    model_iters: int,
    device: str,
    json_out: Path | None,
) -> dict:
    """``python cli.py benchmark multistream``: Markdown tables, then the JSON (also to ``json_out``)."""
    model_path = model_path or default_int8_model(workdir, dynamic_batch=True)
    video = test_video_for(video, workdir, frames)
    out_dir = workdir / "multistream-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with Model(model_path, device=device, threads=threads) as model:
        for n in streams:
            results.append(measure_streams(model, video, n, rounds, live_seconds, out_dir, model_iters))
            print(f"{n} streams: {json.dumps(results[-1]['summary'])}", file=sys.stderr, flush=True)
        report = {
            "model": str(model_path),
            "backend": model.description,
            "threads": threads,
            "video": str(video),
            "results": results,
        }
    print(markdown(results))
    print(json.dumps(report, indent=2))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    return report
