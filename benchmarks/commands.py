"""``python cli.py bench`` and ``python cli.py benchmark ...``: the measurements. Registered by cli.py;
imports stay light here (no torch: ``bench MODEL.onnx`` runs on the lean runtime install)."""

from pathlib import Path
from typing import Optional

import typer

from .engines import DEFAULT_BACKENDS, SPECS, canonical_backend
from .soak import soak

app = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks beyond bench's table: the video pipeline, several "
    "streams, serving, OpenVINO, Triton, export latency.",
)

# an example for each list option, so a refusal shows a value that option takes
LIST_EXAMPLES = {
    "--batch": "1,8",
    "--img-size": "224,448 (one side each: inputs are square)",
    "--threads": "1,2",
    "--streams": "1,2,4,8",
    "--clients": "1,4",
}


def _int_list(text: str, option: str) -> list[int]:
    from wscnet.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        example = LIST_EXAMPLES.get(option, "1,2")
        raise UserError(f"{option} takes comma-separated integers, e.g. {example}; got {text!r}") from None
    return values


def _backend_list(text: str) -> str:
    """--backends: every name must be one bench knows (a typo fails before anything runs); the
    runtime's device names are accepted too (``openvino`` for ``ov``)."""
    names = [canonical_backend(b.strip()) for b in text.split(",") if b.strip()]
    unknown = [name for name in names if name not in SPECS]
    if unknown:
        raise typer.BadParameter(f"unknown back-end {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    return ",".join(names)


def bench(
    inputs: Optional[list[str]] = typer.Argument(
        None,
        metavar="[CKPT|MODEL|ARCH[@SIZE]]...",
        help="Checkpoints (exported as needed), ONNX/engine files (measured as they are) or "
        "architecture names for default models. Default: resnet18@224 resnet101@448.",
    ),
    backends: str = typer.Option(
        ",".join(DEFAULT_BACKENDS),
        callback=_backend_list,
        help="Comma-separated "
        "back-ends (an unknown name is refused with the full list); ones "
        "this machine cannot run are listed as skipped, with the reason.",
    ),
    batch: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    img_size: Optional[str] = typer.Option(
        None, help="Comma-separated input sizes (default: the checkpoint's, or ARCH@SIZE, or 224)."
    ),
    warmup: int = typer.Option(3, help="Untimed calls before timing."),
    iters: Optional[int] = typer.Option(None, help="Timed calls per row (instead of --duration)."),
    duration: Optional[float] = typer.Option(
        None, help="Seconds of timed calls per row (default 3 when --iters is not given)."
    ),
    min_iters: int = typer.Option(5, help="With --duration: at least this many timed calls."),
    out: Path = typer.Option(Path("bench-results"), help="Folder for bench.json/.md/.png and exported models."),
    overwrite: bool = typer.Option(False, help="Replace the results already in --out."),
    no_fail: bool = typer.Option(False, help="Exit 0 even when a row failed (default: exit code 3)."),
    data: Optional[Path] = typer.Option(
        None, help="Image folder for top-1 agreement and int8 calibration (default: synthesised images)."
    ),
    agreement_images: int = typer.Option(40, help="Images each model file is checked on against PyTorch."),
    calib_images: int = typer.Option(
        8, help="Images int8 is calibrated on (spread over the same folder; memory does not grow with it, time does)."
    ),
    reference: Optional[Path] = typer.Option(
        None, help="Checkpoint that given ONNX/engine files are checked against (and run as torch rows)."
    ),
    video: Optional[Path] = typer.Option(
        None,
        help="Also measure the whole runtime pipeline "
        "(decode, pre-process, infer, overlay, encode) on this video; "
        "'test' writes a 640×480 test clip into --out and uses it.",
    ),
    video_frames: int = typer.Option(60, help="Frames of --video to run."),
    video_backend: str = typer.Option(
        "ort-int8", help="Back-end(s), comma-separated, whose model file runs the video pipeline."
    ),
    threads: str = typer.Option(
        "0",
        help="Inference threads for torch, ONNX Runtime and OpenVINO (0: their "
        "default); comma-separated to measure every row at each, e.g. 1,2.",
    ),
    peak_n: int = typer.Option(2048, min=64, help="Side of the matrix product that measures the peak."),
) -> None:
    """Latency, throughput, memory and top-1 agreement per back-end, precision, batch and size."""
    from benchmarks.bench import BenchSettings, failed_rows, run_bench
    from wscnet.errors import CheckFailed

    settings = BenchSettings(
        backends=[b.strip() for b in backends.split(",") if b.strip()],
        batches=_int_list(batch, "--batch"),
        img_sizes=_int_list(img_size, "--img-size") if img_size else None,
        warmup=warmup,
        iters=iters,
        duration=duration if duration is not None or iters is not None else 3.0,
        min_iters=min_iters,
        agreement_images=agreement_images,
        calib_images=calib_images,
        threads=_int_list(threads, "--threads"),
        data=data,
        reference=reference,
        video=video,
        video_frames=video_frames,
        video_backend=video_backend,
        peak_n=peak_n,
    )
    results = run_bench(inputs or [], out, settings, overwrite=overwrite)
    typer.echo(Path(results["files"]["markdown"]).read_text())
    for kind, path in results["files"].items():
        typer.echo(f"{kind}: {path}")
    failed = failed_rows(results)
    if failed and not no_fail:
        raise CheckFailed(f"{len(failed)} row(s) failed: {'; '.join(failed)} (results written; --no-fail exits 0)")


# the options every video benchmark takes (model, video, frames, threads, cache folder)
VIDEO_OPTION = typer.Option(None, "--video", help="Video file (default: a 640×480 30 fps test video).")
FRAMES_OPTION = typer.Option(150, "--frames", help="Frames of the test video / frames per run.")
WORKDIR_OPTION = typer.Option(
    None,
    "--workdir",
    help="Cache for the default model and video (default: wscnet-edge-bench in the temporary folder).",
)


def _workdir(path: Optional[Path]) -> Path:
    from .video_pipeline import DEFAULT_WORKDIR

    return path or DEFAULT_WORKDIR


@app.command("video-pipeline")
def video_pipeline(
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        help="ONNX model or TensorRT engine (default: INT8 resnet18@224, made once; needs torch, the train extra).",
    ),
    video: Optional[Path] = VIDEO_OPTION,
    frames: int = FRAMES_OPTION,
    threads: int = typer.Option(0, "--threads", help="Inference threads (0 = the back-end's default)."),
    workdir: Optional[Path] = WORKDIR_OPTION,
    device: str = typer.Option("cpu", "--device", help="auto, cpu, cuda, tensorrt, openvino or openvino:GPU."),
    precision: Optional[str] = typer.Option(None, "--precision", help="OpenVINO only: fp32 (default) or bf16."),
    rounds: int = typer.Option(5, "--rounds", help="Alternating model-only / pipeline rounds."),
) -> None:
    """The runtime's whole pipeline (decode, pre-process, infer, overlay, mp4 + JSONL) against the
    model's own inference time, in one run."""
    from .video_pipeline import print_video_pipeline

    print_video_pipeline(
        model,
        video,
        frames=frames,
        threads=threads,
        workdir=_workdir(workdir),
        device=device,
        precision=precision,
        rounds=rounds,
    )


@app.command("multistream")
def multistream(
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        help="ONNX model with a dynamic batch, or an engine "
        "(default: INT8 resnet18@224, made once; needs torch, the train extra).",
    ),
    video: Optional[Path] = VIDEO_OPTION,
    frames: int = FRAMES_OPTION,
    threads: int = typer.Option(1, "--threads", help="Inference threads (0 = the back-end's default)."),
    workdir: Optional[Path] = WORKDIR_OPTION,
    streams: str = typer.Option("1,2,4,8", "--streams", help="Stream counts, comma-separated."),
    rounds: int = typer.Option(3, "--rounds", help="Alternating rounds per stream count."),
    live_seconds: float = typer.Option(5.0, "--live-seconds", help="Length of the paced live run (0: none)."),
    model_iters: int = typer.Option(20, "--model-iters", help="Timed model-only calls per round."),
    device: str = typer.Option("cpu", "--device"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results here."),
) -> None:
    """Several 640×480 streams through one model: batched pipeline vs one call per frame vs the
    model's own batched throughput."""
    from .multistream import print_multistream

    print_multistream(
        model,
        video,
        frames=frames,
        threads=threads,
        workdir=_workdir(workdir),
        streams=_int_list(streams, "--streams"),
        rounds=rounds,
        live_seconds=live_seconds,
        model_iters=model_iters,
        device=device,
        json_out=json_out,
    )


@app.command("frame-work")
def frame_work(rounds: int = typer.Option(60, "--rounds", help="Timed blocks of ten calls per step.")) -> None:
    """Per-frame work outside inference (normalising, drawing, views), each change against the code before it."""
    from .frame_work import print_frame_work

    print_frame_work(rounds)


@app.command("live-streams")
def live_streams(
    model: Path = typer.Option(..., "--model", help="Exported ONNX model (its recorded views are what runs)."),
    data: Path = typer.Option(..., "--data", help="The model's data set: its test pictures make the slideshow."),
    streams: str = typer.Option("4,8,16", "--streams", help="Stream counts, comma-separated."),
    seconds: float = typer.Option(20.0, "--seconds", help="Length of each live run."),
    workdir: Optional[Path] = WORKDIR_OPTION,
    infer_every: Optional[int] = typer.Option(
        None, "--infer-every", help="As webcam's (default: the scheduler's share)."
    ),
    infer_fps: Optional[float] = typer.Option(None, "--infer-fps", help="As webcam's."),
    infer_on_change: Optional[float] = typer.Option(None, "--infer-on-change", help="As webcam's."),
    scene_seconds: Optional[float] = typer.Option(
        None, "--scene-seconds", min=0.05, help="The slideshow cuts to a new picture this often (default 0.8 s)."
    ),
    stagger: bool = typer.Option(
        False, "--stagger", help="Start stream i i/N of a scene late, so the streams' cuts do not fall together."
    ),
) -> None:
    """N cameras played in real time with inference scheduling: drawn / inferred fps, latency, label agreement."""
    from .live_streams import print_live_streams

    print_live_streams(
        model,
        data,
        _int_list(streams, "--streams"),
        seconds,
        _workdir(workdir),
        infer_every=infer_every,
        infer_fps=infer_fps,
        infer_on_change=infer_on_change,
        stagger=stagger,
        **({} if scene_seconds is None else {"scene_seconds": scene_seconds}),
    )


@app.command("serve-cost")
def serve_cost(
    model: Optional[Path] = typer.Option(
        None, "--model", help="ONNX model (default: INT8 resnet18@224, as video-pipeline)."
    ),
    video: Optional[Path] = VIDEO_OPTION,
    frames: int = FRAMES_OPTION,
    threads: int = typer.Option(1, "--threads", help="Inference threads (0 = the back-end's default)."),
    workdir: Optional[Path] = WORKDIR_OPTION,
    rounds: int = typer.Option(3, "--rounds", help="Rounds over all conditions."),
) -> None:
    """What serving the live view (webcam --serve) costs the pipeline, with 0 to 20 viewers."""
    from .serve_cost import print_serve_cost

    print_serve_cost(model, video, frames=frames, threads=threads, workdir=_workdir(workdir), rounds=rounds)


@app.command("openvino-vs-ort")
def openvino_vs_ort(
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint (default: a tiny one of --arch)."),
    arch: str = typer.Option("resnet18", "--arch"),
    img_size: int = typer.Option(224, "--img-size"),
    threads: str = typer.Option("1,2", "--threads", help="Comma-separated thread counts."),
    rounds: int = typer.Option(60, "--rounds"),
    warmup: int = typer.Option(5, "--warmup"),
    out: Path = typer.Option(Path("bench-results/openvino_vs_ort.json"), "--out"),
) -> None:
    """OpenVINO against ONNX Runtime on the same files, batch 1, timed interleaved in one process."""
    from .openvino_vs_ort import print_openvino_vs_ort

    print_openvino_vs_ort(
        ckpt, arch, img_size, threads=_int_list(threads, "--threads"), rounds=rounds, warmup=warmup, out=out
    )


@app.command("triton-throughput")
def triton_throughput(
    repo: Path = typer.Option(..., "--repo", help="What export --format triton wrote."),
    seconds: float = typer.Option(8.0, "--seconds"),
    clients: str = typer.Option("1,4", "--clients", help="Client counts, comma-separated."),
) -> None:
    """The Triton python-backend model against local ONNX Runtime, 1 and 4 clients, one run."""
    from .triton_throughput import print_triton_throughput

    print_triton_throughput(repo, seconds, tuple(_int_list(clients, "--clients")))


@app.command("export-latency")
def export_latency(
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint (default: a tiny one of --arch)."),
    arch: str = typer.Option("resnet18", "--arch"),
    img_size: int = typer.Option(224, "--img-size"),
    rounds: int = typer.Option(40, "--rounds"),
    warmup: int = typer.Option(5, "--warmup"),
    threads: int = typer.Option(
        1,
        "--threads",
        help="Intra-op threads of every runner (0: all cores); 1 by "
        "default: on a small shared machine more threads measure the neighbours' load.",
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Also time the FP16 ONNX (slow on x86 CPUs)."),
    out: Path = typer.Option(Path("bench-results/export_latency.json"), "--out"),
) -> None:
    """Batch-1 CPU latency of the exported models against PyTorch eager, measured in one run."""
    from .export_latency import print_export_latency

    print_export_latency(ckpt, arch, img_size, rounds=rounds, warmup=warmup, threads=threads, fp16=fp16, out=out)


@app.command("decode-cost")
def decode_cost(
    video: Optional[list[Path]] = typer.Option(
        None,
        "--video",
        help="H.264 files to measure (repeat; default: 640×480 and 1280×720 clips made with GStreamer's x264enc).",
    ),
    frames: int = typer.Option(300, "--frames", min=2, help="Frames of each made clip."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Timed decodes of each clip per path, interleaved."),
    workdir: Path = typer.Option(Path("bench-results/decode-cost"), "--workdir", help="Where the clips are kept."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results here."),
) -> None:
    """Decode cost per frame: OpenCV's FFmpeg against the runtime's GStreamer path (avdec_h264, and
    nvv4l2decoder on a Jetson), same H.264 files, one run."""
    from .decode_cost import print_decode_cost

    print_decode_cost(list(video or []), frames, rounds, workdir, json_out)


app.command("soak")(soak)


def register(app_: typer.Typer) -> None:
    app_.command("bench")(bench)
    app_.add_typer(app, name="benchmark")
