"""wscnet-edge command line: python cli.py --help.

Each area registers its own commands; their heavy imports (torch, onnx) happen inside the command
bodies, so `python cli.py webcam` never loads torch.
"""

import json
import subprocess
import sys
from pathlib import Path

import typer

from benchmarks.commands import register as register_bench
from export.commands import register as register_export
from runtime.commands import register as register_runtime
from wscnet.commands import register as register_core

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="WSCNet visual sentiment: train, export, run on video, benchmark.",
)
for register in (register_core, register_export, register_runtime, register_bench):
    register(app)


# The demo's short training: a few CPU minutes, far above chance (README: the full-quality command).
DEMO_SYNTH = ["--n-per-class", "120", "--size", "192", "--seed", "1"]
DEMO_TRAIN = ["--arch", "resnet18", "--img-size", "160", "--epochs", "8", "--batch-size", "16",
              "--lr", "0.02", "--head-lr", "0.02", "--lr-schedule", "cosine", "--warmup-epochs", "1",
              "--grad-clip", "2", "--workers", "0"]


def _step(title: str, *args: str) -> None:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    typer.secho(f"\n== {title}: python cli.py {' '.join(args)}", fg="cyan", err=True)
    if subprocess.run(command).returncode != 0:
        typer.secho(f"error: demo step '{title}' failed", fg="red", err=True)
        raise typer.Exit(1)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="Folder for everything the demo writes.")) -> None:
    """The whole chain on built-in synthetic data: synth → train → eval → predict → export INT8 →
    a video through the torch-free runtime with the overlay saved, then the figures it reached."""
    data, run, export_dir = out / "data", out / "run", out / "export"
    _step("synthetic data", "synth", str(data), *DEMO_SYNTH, "--overwrite")
    _step("train", "train", "--data", str(data), "--out", str(run), *DEMO_TRAIN)
    _step("evaluate", "eval", str(run / "best.pt"), "--data", str(data), "--json", str(out / "eval.json"))
    samples = sorted((data / "images").glob("*/*.jpg"))[::40][:6]
    _step("predict", "predict", str(run / "best.pt"), *map(str, samples), "--out", str(out / "predict"))
    _step("export FP32 + INT8", "export", str(run / "best.pt"), "--int8", "--out", str(export_dir),
          "--parity-n", "120")
    video = out / "input.mp4"
    _write_demo_video(data, video)
    _step("runtime on video", "webcam", "--model", str(export_dir / "model.int8.onnx"), "--source",
          str(video), "--save", str(out / "overlay.mp4"), "--jsonl",
          str(out / "frames.jsonl"), "--no-display")
    _print_demo_figures(out, export_dir)


def _write_demo_video(data: Path, video: Path) -> None:
    from wscnet.data import load_index
    from wscnet.synth_video import write_slideshow_video

    test = load_index(data, split="test")
    frames = write_slideshow_video([s.path for s in test.samples[::6][:10]], video, frames_per_image=24)
    typer.secho(f"\n== wrote {video} ({frames} frames, 640x480, 30 fps)", fg="cyan", err=True)


def _print_demo_figures(out: Path, export_dir: Path) -> None:
    metrics = json.loads((out / "eval.json").read_text())
    parity = json.loads((export_dir / "parity.json").read_text())
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    figures = {
        "test_accuracy": metrics["accuracy"],
        "test_accuracy_detection_branch": metrics["accuracy_detection_branch"],
        "detection": {k: metrics["detection"][k] for k in ("mae", "precision", "recall", "f")},
        "parity": {name: {"top1_agreement": r["top1_agreement"], "map_correlation": r["map_correlation"],
                          "passed": r["passed"]} for name, r in parity.items()},
        "video_frames": len(records),
        "video_mean_inference_ms": sum(r["inference_ms"] for r in records) / max(len(records), 1),
    }
    (out / "summary.json").write_text(json.dumps(figures, indent=2) + "\n")
    det = figures["detection"]
    print("\nDemo figures (all measured just now):")
    print(f"  test accuracy {figures['test_accuracy']:.3f} (detection branch "
          f"{figures['test_accuracy_detection_branch']:.3f}); sentiment map MAE {det['mae']:.3f}, "
          f"P {det['precision']:.3f}, R {det['recall']:.3f}, F {det['f']:.3f}")
    for name, r in figures["parity"].items():
        print(f"  {name}: top-1 agreement {r['top1_agreement'] * 100:.1f} %, map correlation "
              f"{r['map_correlation']:.4f}, {'PASS' if r['passed'] else 'FAIL'}")
    print(f"  runtime: {figures['video_frames']} frames, mean inference "
          f"{figures['video_mean_inference_ms']:.1f} ms/frame; overlay video {out / 'overlay.mp4'}")
    print(f"  all figures: {out / 'summary.json'}")


def main() -> None:
    try:
        app()
    except Exception as exc:  # user-facing errors are one line; anything else is a bug: traceback
        if getattr(exc, "user_facing", False):
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 2))
        raise


if __name__ == "__main__":
    main()
