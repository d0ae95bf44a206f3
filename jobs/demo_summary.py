"""The demo's own record of what it reached and how long it took: ``summary.json``.

Every figure the README's demo block quotes comes from this file: the wall time of each step
and of the whole demo (install not included: the demo cannot see it), the test accuracy and map
quality, parity per exported file, the runtime's frames and mean inference time, and the
machine it ran on.
"""

import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path


class DemoClock:
    """Wall time of each named step, and of everything since the first step began."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.started: float | None = None

    @contextmanager
    def step(self, title: str):
        begin = time.perf_counter()
        self.started = self.started if self.started is not None else begin
        try:
            yield
        finally:
            self.steps[title] = round(time.perf_counter() - begin, 2)

    def total_s(self) -> float:
        return round(time.perf_counter() - self.started, 2) if self.started is not None else 0.0


CLOCK = DemoClock()  # the demo's steps run one after another in one process


def demo_figures(out: Path, export_dir: Path) -> dict:
    """The figures of the finished demo, read back from the files its steps wrote."""
    metrics = json.loads((out / "eval.json").read_text())
    parity = json.loads((export_dir / "parity.json").read_text())
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    return {
        "test_accuracy": metrics["accuracy"],
        "test_accuracy_detection_branch": metrics["accuracy_detection_branch"],
        "detection": {k: metrics["detection"][k] for k in ("mae", "precision", "recall", "f")},
        "parity": {
            name: {
                "top1_agreement": r["top1_agreement"],
                "map_correlation": r["map_correlation"],
                "passed": r["passed"],
            }
            for name, r in parity.items()
        },
        "video_frames": len(records),
        "video_mean_inference_ms": _mean([r["inference_ms"] for r in records if r.get("inference_ms") is not None]),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def write_demo_summary(out: Path, export_dir: Path, clock: DemoClock = CLOCK) -> dict:
    """Write ``out/summary.json`` (figures, timings, machine) and return it."""
    from benchmarks.machine import cpu_model, library_versions
    from wscnet.atomic import atomic_write_text

    summary = demo_figures(out, export_dir)
    summary["timings_s"] = {"total_wall": clock.total_s(), "steps_wall": dict(clock.steps)}
    summary["machine"] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "versions": library_versions(),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_demo_summary(summary: dict, out: Path) -> list[str]:
    det, timings = summary["detection"], summary["timings_s"]
    lines = [
        "Demo figures (all measured just now):",
        f"  test accuracy {summary['test_accuracy']:.3f} (detection branch "
        f"{summary['test_accuracy_detection_branch']:.3f}); sentiment map MAE {det['mae']:.3f}, "
        f"P {det['precision']:.3f}, R {det['recall']:.3f}, F {det['f']:.3f}",
    ]
    for name, r in summary["parity"].items():
        lines.append(
            f"  {name}: top-1 agreement {r['top1_agreement'] * 100:.1f} %, map correlation "
            f"{r['map_correlation']:.4f}, {'PASS' if r['passed'] else 'FAIL'}"
        )
    lines.append(
        f"  runtime: {summary['video_frames']} frames, mean inference "
        f"{summary['video_mean_inference_ms']:.1f} ms/frame; overlay video {out / 'overlay.mp4'}"
    )
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings["steps_wall"].items())
    lines.append(
        f"  wall time {timings['total_wall']:.0f} s ({steps}) on {summary['machine']['cpu']}, "
        f"{summary['machine']['logical_cores']} logical cores"
    )
    lines.append(f"  all figures: {out / 'summary.json'}")
    return lines


def main(argv: list[str]) -> None:
    """``python cli.py job demo-summary runs/demo/summary.json``: the demo's block, from the file."""
    path = Path(argv[0])
    print("\n".join(format_demo_summary(json.loads(path.read_text()), path.parent)))
