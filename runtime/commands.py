"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

import sys
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("webcam")(webcam)


def webcam(
    model: Path = typer.Option(..., "--model", help="Exported model: .onnx, or a TensorRT .engine with its .json"),
    source: str = typer.Option("0", "--source", help="Camera index, video file, image, folder of images, or rtsp/http URL"),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the overlaid video here (.mp4 or .avi)"),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="One JSON record per frame: label, probabilities, timings"),
    no_display: bool = typer.Option(False, "--no-display", help="Never open a window (headless boxes)"),
    smooth: float = typer.Option(0.0, "--smooth", min=0.0, max=0.99, help="EMA factor for the overlay (0 = off)"),
    alpha: float = typer.Option(0.45, "--alpha", min=0.0, max=1.0, help="Opacity of the sentiment map"),
    resize: Optional[str] = typer.Option(None, "--resize", help="Override the model's input contract (default: the geometry it was trained with): squash (whole frame), crop (centre square) or letterbox"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or tensorrt (ONNX Runtime providers)"),
    threads: int = typer.Option(-1, "--threads", min=-1, help="ONNX Runtime intra-op threads (-1 = all cores but one, left to capture and drawing; 0 = ONNX Runtime's default)"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many frames"),
) -> None:
    """Run the sentiment model on a camera, video, image(s) or stream with a live overlay."""
    from .errors import RuntimeUserError
    from .video import run_video

    from .contract import GEOMETRIES

    if resize is not None and resize not in GEOMETRIES:
        raise RuntimeUserError(f"--resize must be one of {', '.join(GEOMETRIES)}; got {resize!r}")
    stats = run_video(
        model, source, save=save, jsonl=jsonl, display=False if no_display else None, smooth=smooth,
        alpha=alpha, resize=resize, device=device, threads=threads, max_frames=max_frames,
    )
    print(stats.summary_line(), file=sys.stderr)
    if save is not None:
        print(f"saved {save}", file=sys.stderr)
    if jsonl is not None:
        print(f"wrote {jsonl}", file=sys.stderr)
