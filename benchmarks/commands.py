"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

from pathlib import Path
from typing import Optional

import typer

from .backends import DEFAULT_BACKENDS, SPECS


def _int_list(text: str, option: str) -> list[int]:
    from wscnet.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated integers, e.g. 1,8; got {text!r}") from None
    return values


def _backend_list(text: str) -> str:
    """--backends: every name must be one bench knows (a typo fails before anything runs)."""
    unknown = [b.strip() for b in text.split(",") if b.strip() and b.strip() not in SPECS]
    if unknown:
        raise typer.BadParameter(f"unknown back-end {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    return text


def bench(
    inputs: Optional[list[str]] = typer.Argument(
        None, metavar="[CKPT|MODEL|ARCH[@SIZE]]...",
        help="Checkpoints (exported as needed), ONNX/engine files (measured as they are) or "
        "architecture names for default models. Default: resnet18@224 resnet101@448.",
    ),
    backends: str = typer.Option(",".join(DEFAULT_BACKENDS), callback=_backend_list, help="Comma-separated "
                                 "back-ends (an unknown name is refused with the full list); ones "
                                 "this machine cannot run are listed as skipped, with the reason."),
    batch: str = typer.Option("1,8", help="Comma-separated batch sizes."),
    img_size: Optional[str] = typer.Option(None, help="Comma-separated input sizes (default: the "
                                           "checkpoint's, or ARCH@SIZE, or 224)."),
    warmup: int = typer.Option(3, help="Untimed calls before timing."),
    iters: Optional[int] = typer.Option(None, help="Timed calls per row (instead of --duration)."),
    duration: Optional[float] = typer.Option(None, help="Seconds of timed calls per row "
                                             "(default 3 when --iters is not given)."),
    min_iters: int = typer.Option(5, help="With --duration: at least this many timed calls."),
    out: Path = typer.Option(Path("bench-results"), help="Folder for bench.json/.md/.png and exported models."),
    overwrite: bool = typer.Option(False, help="Replace the results already in --out."),
    no_fail: bool = typer.Option(False, help="Exit 0 even when a row failed (default: exit code 3)."),
    data: Optional[Path] = typer.Option(None, help="Image folder for top-1 agreement and int8 "
                                        "calibration (default: synthesised images)."),
    agreement_images: int = typer.Option(40, help="Images each model file is checked on against PyTorch."),
    calib_images: int = typer.Option(8, help="Images int8 is calibrated on (spread over the same "
                                     "folder; memory does not grow with it, time does)."),
    reference: Optional[Path] = typer.Option(None, help="Checkpoint that given ONNX/engine files "
                                             "are checked against (and run as torch rows)."),
    video: Optional[Path] = typer.Option(None, help="Also measure the whole runtime pipeline "
                                         "(decode, pre-process, infer, overlay, encode) on this video; "
                                         "'test' writes a 640×480 test clip into --out and uses it."),
    video_frames: int = typer.Option(60, help="Frames of --video to run."),
    video_backend: str = typer.Option("ort-int8", help="Back-end(s), comma-separated, whose model file runs the video pipeline."),
    threads: str = typer.Option("0", help="Inference threads for torch, ONNX Runtime and OpenVINO (0: their "
                                "default); comma-separated to measure every row at each, e.g. 1,2."),
    peak_n: int = typer.Option(2048, min=64, help="Side of the matrix product that measures the peak."),
) -> None:
    """Latency, throughput, memory and top-1 agreement per back-end, precision, batch and size."""
    from benchmarks.bench import BenchSettings, failed_rows, run_bench
    from wscnet.errors import CheckFailed

    settings = BenchSettings(
        backends=[b.strip() for b in backends.split(",") if b.strip()],
        batches=_int_list(batch, "--batch"),
        img_sizes=_int_list(img_size, "--img-size") if img_size else None,
        warmup=warmup, iters=iters,
        duration=duration if duration is not None or iters is not None else 3.0,
        min_iters=min_iters, agreement_images=agreement_images, calib_images=calib_images,
        threads=_int_list(threads, "--threads"), data=data, reference=reference, video=video, video_frames=video_frames,
        video_backend=video_backend, peak_n=peak_n,
    )
    results = run_bench(inputs or [], out, settings, overwrite=overwrite)
    typer.echo(Path(results["files"]["markdown"]).read_text())
    for kind, path in results["files"].items():
        typer.echo(f"{kind}: {path}")
    failed = failed_rows(results)
    if failed and not no_fail:
        raise CheckFailed(f"{len(failed)} row(s) failed: {'; '.join(failed)} (results written; --no-fail exits 0)")


def doctor(
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated back-ends to smoke-test; "
                                           "any that is unavailable or fails gives exit code 1 (default: every "
                                           "back-end, unavailable ones listed as skipped)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    no_smoke: bool = typer.Option(False, "--no-smoke", help="Versions and devices only."),
) -> None:
    """What this machine can run: versions, GPUs, TensorRT plugin/AOT support, a smoke test per back-end."""
    from benchmarks.doctor import run_doctor

    requested = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    report = run_doctor(requested, smoke=not no_smoke, echo=(lambda line: None) if json_out else typer.echo)
    if json_out:
        typer.echo(report.to_json())
    if report.failed_requests:
        typer.echo(f"error: requested back-end(s) not working here: {', '.join(report.failed_requests)}", err=True)
        raise typer.Exit(1)


def demo(out: Path = typer.Option(Path("runs/demo"), help="Folder for everything the demo writes.")) -> None:
    """The whole chain on built-in synthetic data: synth → train → eval → predict → export INT8 →
    a video through the torch-free runtime with the overlay saved, then the figures it reached."""
    from .demo import demo as run_demo

    run_demo(out)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("bench")(bench)
    app.command("doctor")(doctor)
