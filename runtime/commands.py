"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .uri import Decoder
from .validate import ResizeMode, RuntimeDevice, check_webcam_paths


def register(app: typer.Typer) -> None:
    app.command("webcam")(webcam)


def webcam(
    model: str = typer.Option(..., "--model", help="Exported model: .onnx, or a TensorRT .engine with its .json, or triton://HOST:PORT/MODEL (triton+http:// for HTTP)"),
    source: Optional[List[str]] = typer.Option(None, "--source", help="Camera index, video file, image, folder of images, rtsp/http URL, csi://N, v4l2:///dev/videoN or gst://PIPELINE (docs/jetson-cameras.md); repeat for several streams (default: camera 0)"),
    sources: Optional[Path] = typer.Option(None, "--sources", help="A file with one source per line (# comments)"),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the overlaid video here (.mp4 or .avi); several streams: a name with {stream}"),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="One JSON record per frame: label, probabilities, timings; several streams: a name with {stream}"),
    no_display: bool = typer.Option(False, "--no-display", help="Never open a window (headless boxes)"),
    smooth: float = typer.Option(0.0, "--smooth", min=0.0, max=0.99, help="EMA factor for the overlay (0 = off)"),
    opacity: float = typer.Option(0.45, "--opacity", min=0.0, max=1.0, help="Opacity of the sentiment map (0: not drawn)"),
    resize: Optional[ResizeMode] = typer.Option(None, "--resize", help="Override the model's input contract (default: the geometry it was trained with): squash (whole frame), crop (centre square) or letterbox"),
    device: RuntimeDevice = typer.Option("auto", "--device", help="auto, cpu, cuda or tensorrt (ONNX Runtime providers), or openvino / openvino:CPU / openvino:GPU"),
    threads: int = typer.Option(-1, "--threads", min=-1, help="Inference threads (-1 = all cores but one, left to capture and drawing; 0 = the back-end's default)"),
    precision: Optional[str] = typer.Option(None, "--precision", help="OpenVINO only: fp32 (default) or bf16 for a float model; a Q/DQ model runs INT8"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop each stream after this many frames"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Frames per inference call, at most one per stream (default: the number of streams)"),
    batch_timeout_ms: float = typer.Option(33.0, "--batch-timeout-ms", min=0.0, help="Send a batch that is not full this long after its first frame arrived"),
    keep_going: bool = typer.Option(False, "--keep-going", help="Run the sources that open when others cannot be opened"),
    serve: Optional[str] = typer.Option(None, "--serve", help="Serve a live page at [HOST:]PORT (loopback unless HOST is given)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="WSCNET_TOKEN", help="Secret every route but /healthz requires (bearer or ?token=)"),
    max_clients: int = typer.Option(8, "--max-clients", min=1, help="Viewers at once; the next gets 503"),
    realtime: bool = typer.Option(False, "--realtime", help="Play a file at its own frame rate (to watch it live)"),
    decoder: Decoder = typer.Option("auto", "--decoder", help="How RTSP streams and H.264/H.265 files are decoded: opencv (FFmpeg), cpu (GStreamer avdec), nvdec (Jetson nvv4l2decoder), auto (nvdec where it exists, else opencv)"),
) -> None:
    """Run the sentiment model on cameras, videos, images or streams with a live overlay; several sources share one model, batched."""
    from .sources import read_source_list
    from .video import run_videos

    check_webcam_paths(model, save, jsonl)
    live = None
    if serve is not None:
        from .serve import parse_address

        host, port = parse_address(serve)
        live = {"host": host, "port": port, "token": token, "max_clients": max_clients}
    specs = list(source or []) + (read_source_list(sources) if sources is not None else [])
    all_stats = run_videos(
        model, specs or ["0"], keep_going=keep_going, device=device, threads=threads, precision=precision, resize=resize,
        save=save, jsonl=jsonl, display=False if no_display else None, smooth=smooth, opacity=opacity,
        max_frames=max_frames, batch_size=batch_size, batch_timeout_ms=batch_timeout_ms,
        serve=live, realtime=realtime, decoder=decoder,
    )
    for stats in all_stats:
        prefix = f"{stats.stream}: " if len(all_stats) > 1 else ""
        print(prefix + stats.summary_line(), file=sys.stderr)
    if len(all_stats) > 1:
        frames = sum(s.frames_out for s in all_stats)
        wall = max(s.wall_s for s in all_stats)
        print(f"{len(all_stats)} streams: {frames} frames in {wall:.1f} s ({frames / max(wall, 1e-9):.1f} fps together)",
              file=sys.stderr)
    if save is not None:
        print(f"saved {save}", file=sys.stderr)
    if jsonl is not None:
        print(f"wrote {jsonl}", file=sys.stderr)
