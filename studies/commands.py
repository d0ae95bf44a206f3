"""``python cli.py study ...``: the one-off measurements behind a design choice, each beside its
result (``studies/NAME.md``). Registered by cli.py; imports stay light here (no torch)."""

from pathlib import Path
from typing import Literal, Optional

import typer

app = typer.Typer(
    no_args_is_help=True, help="Studies: the measurements behind a design choice (their results: studies/*.md)."
)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"comma-separated integers, e.g. 8,64; got {text!r}") from None


def _words(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


@app.command("int8-sensitivity")
def int8_sensitivity(
    checkpoint: Path = typer.Argument(..., help="A trained checkpoint."),
    calib: Path = typer.Option(..., "--calib", help="Calibration images (as export --calib)."),
    heldout: Path = typer.Option(..., "--heldout", help="Held-out images."),
    out: Path = typer.Option(Path("runs/int8-sensitivity"), "--out"),
    method: str = typer.Option("entropy", "--method"),
    calib_n: int = typer.Option(64, "--calib-n"),
    n: int = typer.Option(200, "--n", help="Held-out images."),
    blocks: bool = typer.Option(True, "--blocks/--no-blocks", help="Also the per-block sensitivity."),
    layout: list[str] = typer.Option([], "--layout", help="Float layouts besides none and the arch's own."),
    target: Optional[float] = typer.Option(
        None,
        "--target",
        help="Also search, block by block, the float blocks that reach this top-1 agreement (e.g. 0.97).",
    ),
    compare: list[Path] = typer.Option(
        [], "--compare", help="Exported files of the same checkpoint to report too (e.g. its FP16)."
    ),
) -> None:
    """Why an INT8 model disagrees with its FP32 original: near ties, and which blocks are sensitive."""
    from .int8_sensitivity import run_int8_sensitivity

    run_int8_sensitivity(
        checkpoint,
        calib=calib,
        heldout=heldout,
        out=out,
        method=method,
        calib_n=calib_n,
        n=n,
        blocks=blocks,
        layout=layout,
        target=target,
        compare=compare,
    )


@app.command("int8-layouts")
def int8_layouts(
    checkpoints: list[Path] = typer.Argument(..., help="Trained checkpoints."),
    calib: Path = typer.Option(..., "--calib", help="Calibration images (the training set)."),
    heldout: Path = typer.Option(..., "--heldout", help="Held-out images for parity."),
    out: Path = typer.Option(Path("runs/int8-layouts"), "--out"),
    layout: Optional[list[str]] = typer.Option(None, "--layout", help="Float layouts (default: all)."),
    method: list[str] = typer.Option(["entropy", "percentile", "max"], "--method"),
    calib_n: int = typer.Option(64, "--calib-n"),
    parity_n: int = typer.Option(200, "--parity-n"),
) -> None:
    """Which layers INT8 export keeps in float, and how to calibrate (every layout × method)."""
    from .int8_layouts import run_int8_layouts

    run_int8_layouts(
        checkpoints,
        calib=calib,
        heldout=heldout,
        out=out,
        layout=layout,
        method=method,
        calib_n=calib_n,
        parity_n=parity_n,
    )


@app.command("batchnorm-choice")
def batchnorm_choice(
    data: Path = typer.Argument(..., help="Synthetic set (python cli.py synth)."),
    out: Path = typer.Option(Path("runs/bn-choice"), "--out"),
    arch: list[str] = typer.Option(["mobilenet_v3_small"], "--arch"),
    momentum: list[float] = typer.Option([0.01, 0.1], "--momentum"),
    img_size: int = typer.Option(96, "--img-size"),
    epochs: int = typer.Option(4, "--epochs"),
    precise_images: int = typer.Option(512, "--precise-images"),
) -> None:
    """Which BatchNorm statistics to validate and save with (running averages vs precise BN)."""
    from .batchnorm_choice import run_batchnorm_choice

    run_batchnorm_choice(
        data, out=out, arch=arch, momentum=momentum, img_size=img_size, epochs=epochs, precise_images=precise_images
    )


@app.command("backbone-table")
def backbone_table(
    checkpoints: list[Path] = typer.Argument(..., help="Trained checkpoints (best.pt), one per backbone."),
    data: Path = typer.Option(..., "--data", help="The set they were trained on: INT8 calibration, test split."),
    heldout: Path = typer.Option(..., "--heldout", help="Images never trained on, for parity."),
    out: Path = typer.Option(Path("runs/backbone-table"), "--out"),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads (torch and ONNX Runtime)."),
    duration: float = typer.Option(3.0, "--duration", help="Seconds of timed batch-1 calls per row."),
    video_frames: int = typer.Option(60, "--video-frames", help="Frames of the 640×480 clip (0: no video)."),
    calib_n: int = typer.Option(64, "--calib-n"),
    parity_n: int = typer.Option(200, "--parity-n"),
) -> None:
    """One table over trained backbones: accuracy, detection F, parity, latency, fps, size, memory."""
    from .backbone_table import run_backbone_table

    run_backbone_table(
        checkpoints,
        data=data,
        heldout=heldout,
        out=out,
        threads=threads,
        duration=duration,
        video_frames=video_frames,
        calib_n=calib_n,
        parity_n=parity_n,
    )


@app.command("scale-agreement")
def scale_agreement(
    model: Path = typer.Argument(..., help="FP32 ONNX model."),
    calib: Path = typer.Argument(..., help="Calibration images."),
    n: int = typer.Option(16, "--n", help="Calibration images used."),
    method: str = typer.Option("entropy", "--method", help="entropy, max or percentile."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
    keep: Optional[Path] = typer.Option(
        None, "--keep", help="Keep the bounded model in this folder (bounded-METHOD.int8.onnx)."
    ),
    ort_option: Optional[Literal["max-intermediate", "strided"]] = typer.Option(
        None, "--ort-option", help="Compare onnxruntime's own option instead of the bounded calibration."
    ),
    chunk: int = typer.Option(4, "--chunk", help="Images per chunk of --ort-option."),
) -> None:
    """INT8 scales of the bounded calibration against onnxruntime's one-shot calibration."""
    from .scale_agreement import print_scale_agreement

    print_scale_agreement(model, calib, n, method, json_out, keep, ort_option, chunk)


@app.command("memory-bounds")
def memory_bounds(
    work: Path = typer.Option(Path("runs/memory"), "--work", help="Folder for models, images and the tables."),
    jobs: str = typer.Option(
        "int8,parity,eval,agreement", "--jobs", help="Comma-separated: int8, fp16, parity, eval, agreement, runtime."
    ),
    models: str = typer.Option("resnet18@224,resnet101@448", "--models"),
    calib_n: str = typer.Option("8,64,256", "--calib-n"),
    sets: str = typer.Option("50,200", "--sets"),
    agreement_n: int = typer.Option(16, "--agreement-n"),
    frames: str = typer.Option("3000", "--frames", help="Clip lengths of the runtime job."),
    methods: str = typer.Option("max,entropy,percentile", "--methods"),
    results: str = typer.Option("memory", "--results", help="Table name: --work/NAME.json and NAME.md."),
) -> None:
    """Peak memory and wall time of the long jobs, each in a process of its own."""
    from .memory_bounds import JOB_NAMES, run_memory_bounds

    unknown = [job for job in _words(jobs) if job not in JOB_NAMES]
    if unknown:
        raise typer.BadParameter(
            f"unknown job {', '.join(unknown)}; choose from {', '.join(JOB_NAMES)}", param_hint="--jobs"
        )
    run_memory_bounds(
        work,
        _words(jobs),
        _words(models),
        _ints(calib_n),
        _ints(sets),
        agreement_n,
        _ints(frames),
        _words(methods),
        results,
    )


@app.command("aspect-accuracy")
def aspect_accuracy(
    checkpoint: Path = typer.Argument(..., help="A trained checkpoint."),
    model: Path = typer.Argument(..., help="The checkpoint's exported FP32 ONNX model."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data set (default: the one the checkpoint records)."),
    out: Path = typer.Option(Path("runs/aspect"), "--out"),
    video: bool = typer.Option(True, "--video/--no-video", help="Also the 16:9 video run."),
) -> None:
    """How well the runtime classifies frames of other shapes, against eval on the pictures."""
    from .aspect_accuracy import print_aspect_accuracy

    print_aspect_accuracy(checkpoint, model, data, out, video)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="study")


@app.command("views")
def views(
    pairs: list[Path] = typer.Argument(..., help="CKPT MODEL pairs: a checkpoint and the model exported from it."),
    n: int = typer.Option(200, "--n", help="Held-out pictures per model."),
) -> None:
    """One view or two: each model's recorded decision and its runtime default against eval, on camera frames."""
    from .views_table import run_views_table

    if len(pairs) % 2:
        raise typer.BadParameter("give CKPT MODEL pairs")
    run_views_table(list(zip(pairs[::2], pairs[1::2])), n)


@app.command("auto-device")
def auto_device(
    models: list[Path] = typer.Argument(None, help="ONNX models (default: resnet18 at 224 px, FP32 and INT8)."),
    threads: str = typer.Option("2", "--threads", help="Inference thread counts, comma-separated."),
    rounds: int = typer.Option(200, "--rounds", help="Timed rounds per candidate."),
) -> None:
    """Does --device auto pick the fastest CPU back-end? Its probe against every candidate timed again."""
    from .auto_device import run_auto_device

    run_auto_device(list(models or []), _ints(threads), rounds)
