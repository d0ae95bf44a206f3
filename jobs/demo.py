"""``python cli.py demo``: the whole chain on built-in synthetic data, each step a real CLI
command in its own process: synth → train → eval → predict → export FP32 + INT8 (calibrated on
the training split, checked on the test split) → a 640×480 video through the torch-free runtime
with the overlay saved; then the figures it reached (summary.json, jobs/demo_summary.py)."""

import subprocess
import sys
from pathlib import Path

import typer

from .demo_summary import CLOCK as DEMO_CLOCK

CLI = Path(__file__).resolve().parent.parent / "cli.py"


# The demo's short training: a few CPU minutes, far above chance (README: the full-quality command).
# `--augment sides` shows training the windows camera frames make, so the runtime's views stay close to
# `eval` on stretched frames and on wider scenes (docs/views.md).
DEMO_SYNTH = ["--n-per-class", "120", "--size", "192", "--seed", "1"]
DEMO_TRAIN = ["--arch", "resnet18", "--img-size", "160", "--epochs", "8", "--recipe", "scratch", "--workers", "0"]
DEMO_TRAIN += ["--augment", "sides"]


def _step(title: str, *args: str) -> None:
    command = [sys.executable, str(CLI), *args]
    typer.secho(f"\n== {title}: python cli.py {' '.join(args)}", fg="cyan", err=True)
    with DEMO_CLOCK.step(title):
        returncode = subprocess.run(command).returncode
    if returncode != 0:
        typer.secho(f"error: demo step '{title}' failed", fg="red", err=True)
        raise typer.Exit(1)


def run_demo(out: Path) -> None:
    """Every step of the demo into ``out``, each a CLI command in its own process; then its figures."""
    data, run, export_dir = out / "data", out / "run", out / "export"
    _step("synthetic data", "synth", str(data), *DEMO_SYNTH, "--overwrite")
    _step("train", "train", "--data", str(data), "--out", str(run), *DEMO_TRAIN, "--overwrite")
    _step("evaluate", "eval", str(run / "best.pt"), "--data", str(data), "--json", str(out / "eval.json"))
    samples = sorted((data / "images").glob("*/*.jpg"))[::40][:6]
    _step("predict", "predict", str(run / "best.pt"), *map(str, samples), "--out", str(out / "predict"))
    _step(
        "export FP32 + INT8",
        "export",
        str(run / "best.pt"),
        "--int8",
        "--out",
        str(export_dir),
        "--parity-n",
        "120",
        "--overwrite",
    )
    video = out / "input.mp4"
    _write_demo_video(data, video)
    _step(
        "runtime on video",
        "webcam",
        "--model",
        str(export_dir / "model.int8.onnx"),
        "--source",
        str(video),
        "--save",
        str(out / "overlay.mp4"),
        "--jsonl",
        str(out / "frames.jsonl"),
        "--no-display",
    )
    _print_demo_figures(out, export_dir)


def _write_demo_video(data: Path, video: Path) -> None:
    from wscnet.data import load_index
    from wscnet.synth_video import write_slideshow_video

    test = load_index(data, split="test")
    frames = write_slideshow_video([s.path for s in test.samples[::6][:10]], video, frames_per_image=24)
    typer.secho(f"\n== wrote {video} ({frames} frames, 640x480, 30 fps)", fg="cyan", err=True)


def _print_demo_figures(out: Path, export_dir: Path) -> None:
    from .demo_summary import format_demo_summary, write_demo_summary

    print("\n" + "\n".join(format_demo_summary(write_demo_summary(out, export_dir), out)))
