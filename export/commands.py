"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

from pathlib import Path
from typing import Optional

import typer


def export(
    checkpoint: Optional[Path] = typer.Argument(None, metavar="[CKPT]", help="Checkpoint (default: the newest best.pt under runs/)."),
    format: str = typer.Option("onnx", "--format", help="onnx | engine (TensorRT, needs a GPU)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write the FP16 ONNX (float32 I/O) and use it."),
    int8: bool = typer.Option(False, "--int8", help="Also write the INT8 Q/DQ ONNX (needs images: --calib)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="A folder: every image file below it (map folders such as ground_truth/ skipped), --calib-n of them spread evenly. Default: the training split of the data set the checkpoint was trained on."),
    calib_n: int = typer.Option(256, "--calib-n", help="Calibration images used."),
    calib_method: str = typer.Option("entropy", "--calib-method", help="entropy | max | percentile."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input side (default: the checkpoint's)."),
    batch: int = typer.Option(1, "--batch", help="Fixed batch size (engine: the optimal batch)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Dynamic batch dimension."),
    max_batch: int = typer.Option(16, "--max-batch", help="Engine profile's largest batch (--dynamic-batch)."),
    no_fused_op: bool = typer.Option(False, "--no-fused-op", help="Plain ONNX ops instead of the fused node."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <run>/export)."),
    parity_data: Optional[Path] = typer.Option(None, "--parity-data", help="A folder of held-out images for parity. Default: the test split of the data set the checkpoint was trained on; never calibration images."),
    parity_n: int = typer.Option(200, "--parity-n", help="Images the parity check uses."),
    skip_parity: bool = typer.Option(False, "--skip-parity", help="Do not run the parity check."),
    workspace_mb: int = typer.Option(2048, "--workspace-mb", help="TensorRT workspace limit."),
    trt_plugin: bool = typer.Option(False, "--trt-plugin/--no-trt-plugin", help="Engine: run the fused node as the Triton plugin (TensorRT >= 10.6; the process loading the engine must call export.trt_plugin.register_plugin()) instead of its ONNX function body (default: a self-contained engine)."),
) -> None:
    """Export a checkpoint to ONNX (fused CrossSpatialPoolMap op), FP16/INT8 and TensorRT, with parity."""
    from .pipeline import ExportRequest, newest_checkpoint, run_export, summary_lines

    if checkpoint is None:
        checkpoint = newest_checkpoint()
        typer.echo(f"using the newest checkpoint: {checkpoint}", err=True)
    request = ExportRequest(
        checkpoint=checkpoint, out=out or checkpoint.parent / "export", format=format, fp16=fp16,
        int8=int8, calib=calib, calib_n=calib_n, calib_method=calib_method, img_size=img_size,
        batch=batch, dynamic_batch=dynamic_batch, max_batch=max_batch, fused_op=not no_fused_op,
        parity_data=parity_data, parity_n=parity_n, parity=not skip_parity, workspace_mb=workspace_mb,
        trt_plugin=trt_plugin,
    )
    result = run_export(request, echo=typer.echo)
    for line in summary_lines(result):
        typer.echo(line)


def parity(
    model: Path = typer.Argument(..., help="Exported model (.onnx or .engine)."),
    checkpoint: Optional[Path] = typer.Argument(None, metavar="[CKPT]", help="Reference checkpoint (default: the newest best.pt under runs/)."),
    data: Optional[Path] = typer.Option(None, "--data", help="A folder of held-out images (default: the test split of the data set the checkpoint was trained on)."),
    n: int = typer.Option(200, "--n", help="Images compared."),
) -> None:
    """Compare an exported model with the PyTorch reference on real images; writes parity.json."""
    from wscnet.errors import UserError

    from .parity import format_report, run_parity, save_parity
    from .pipeline import newest_checkpoint, parity_images

    if checkpoint is None:
        checkpoint = newest_checkpoint()
        typer.echo(f"using the newest checkpoint: {checkpoint}", err=True)
    images = parity_images(checkpoint, data, n)
    if images is None:
        raise UserError(f"{checkpoint}: no training data recorded in it; pass --data DIR")
    typer.echo(f"parity images: {images.description}", err=True)
    report = run_parity(model, checkpoint, images, n=n)
    path = save_parity(report, model)
    typer.echo(format_report(report))
    typer.echo(f"saved {path}")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(parity)
