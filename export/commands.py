"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

from pathlib import Path
from typing import Literal, Optional

import typer

from wscnet.defaults import field_defaults, field_values

from .choices import CALIB_METHODS, FORMATS
from .log import log
from .request import ExportRequest

EXPORT = field_defaults(ExportRequest)  # the one place each export default is written
NO_FAIL_HELP = 'Exit 0 even when a check fails (default: exit code 3, README "Exit codes").'


def export(
    checkpoint: Optional[Path] = typer.Argument(
        None,
        metavar="[CKPT]",
        help="Checkpoint (default: the newest best.pt under runs/).",
    ),
    format: Literal[FORMATS] = typer.Option(
        EXPORT.format,
        "--format",
        help="onnx, engine (TensorRT, needs a GPU), or triton (a Triton model repository in --out).",
    ),
    fp16: bool = typer.Option(
        EXPORT.fp16,
        "--fp16",
        help="Also write the FP16 ONNX (float32 I/O) and use it (triton: the GPU model runs the FP32 ONNX in "
        "FP16 through TensorRT).",
    ),
    int8: bool = typer.Option(EXPORT.int8, "--int8", help="Also write the INT8 Q/DQ ONNX (needs images: --calib)."),
    calib: Optional[Path] = typer.Option(
        EXPORT.calib,
        "--calib",
        help="A folder: every image file below it (map folders such as ground_truth/ skipped), --calib-n of "
        "them spread evenly. Default: the training split of the data set the checkpoint was trained on.",
    ),
    calib_n: int = typer.Option(EXPORT.calib_n, "--calib-n", min=1, help="Calibration images used."),
    calib_method: Literal[CALIB_METHODS] = typer.Option(EXPORT.calib_method, "--calib-method"),
    int8_float: Optional[str] = typer.Option(
        EXPORT.int8_float,
        "--int8-float",
        help="INT8: what stays float, 'none' or parts joined by '+': squeeze_excitation, hardswish, block "
        "names such as backbone.15 (study int8-sensitivity --target finds them). Default: the "
        "backbone's measured layout.",
    ),
    img_size: Optional[int] = typer.Option(
        EXPORT.img_size,
        "--img-size",
        help="Input side (default: the checkpoint's).",
    ),
    batch: int = typer.Option(EXPORT.batch, "--batch", min=1, help="Fixed batch size (engine: the optimal batch)."),
    dynamic_batch: bool = typer.Option(EXPORT.dynamic_batch, "--dynamic-batch", help="Dynamic batch dimension."),
    max_batch: int = typer.Option(
        EXPORT.max_batch,
        "--max-batch",
        min=1,
        help="Engine profile's largest batch (--dynamic-batch); Triton: max_batch_size.",
    ),
    no_fused_op: bool = typer.Option(
        not EXPORT.fused_op,
        "--no-fused-op",
        help="Plain ONNX ops instead of the fused node.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <run>/export)."),
    overwrite: bool = typer.Option(EXPORT.overwrite, "--overwrite", help="Replace model files already in --out."),
    parity_data: Optional[Path] = typer.Option(
        EXPORT.parity_data,
        "--parity-data",
        help="A folder of held-out images for parity. Default: the test split of the data set the checkpoint "
        "was trained on; never calibration images.",
    ),
    parity_n: int = typer.Option(EXPORT.parity_n, "--parity-n", min=1, help="Images the parity check uses."),
    skip_parity: bool = typer.Option(not EXPORT.parity, "--skip-parity", help="Do not run the parity check."),
    no_fail: bool = typer.Option(False, "--no-fail", help=NO_FAIL_HELP),
    workspace_mb: int = typer.Option(EXPORT.workspace_mb, "--workspace-mb", help="TensorRT workspace limit."),
    fold_normalization: bool = typer.Option(
        EXPORT.fold_normalization,
        "--fold-normalization",
        help="Put (x/255 - mean)/std into the graph: the model takes 0-255 RGB (what DeepStream's nvinfer "
        "needs when std differs per channel).",
    ),
    quantizer: str = typer.Option(
        EXPORT.quantizer,
        "--quantizer",
        help="INT8: ort (onnxruntime's calibration; writes model.int8.onnx for ONNX Runtime and "
        "model.int8-trt.onnx placed by TensorRT's rules) | modelopt (also NVIDIA ModelOpt's "
        "model.int8-modelopt.onnx, in its own environment).",
    ),
    modelopt_python: Optional[str] = typer.Option(
        EXPORT.modelopt_python,
        "--modelopt-python",
        help="Python of the environment with nvidia-modelopt[onnx] (default: $WSCNET_MODELOPT_PYTHON).",
    ),
    decide_views: bool = typer.Option(
        EXPORT.decide_views,
        "--decide-views/--keep-views",
        help="Measure one view against two on held-out camera-shaped frames and record the choice in the "
        "model (docs/views.md), or keep the checkpoint's views.",
    ),
    trt_plugin: bool = typer.Option(
        EXPORT.trt_plugin,
        "--trt-plugin/--no-trt-plugin",
        help="Engine: run the fused node as the Triton kernel compiled to PTX and baked into the plan (AOT "
        "plugin, TensorRT >= 10.9; older TensorRT builds the ONNX function body and says so). Either way "
        "the engine needs no Python to run.",
    ),
) -> None:
    """Export a checkpoint to ONNX (fused CrossSpatialPoolMap op), FP16/INT8 and TensorRT, with parity."""
    given = field_values(ExportRequest, locals())
    from .exporter import failed_checks, newest_checkpoint, run_export, summary_lines

    newest = checkpoint is None
    checkpoint = checkpoint or newest_checkpoint()
    request = ExportRequest(
        **{
            **given,
            "checkpoint": checkpoint,
            "out": out or checkpoint.parent / "export",
            "fused_op": not no_fused_op,
            "parity": not skip_parity,
        }
    )
    request.validate()  # before anything is printed or computed
    if newest:
        log.info(f"using the newest checkpoint: {checkpoint}")
    result = run_export(request, echo=typer.echo)
    for line in summary_lines(result):
        typer.echo(line)
    fail_unless(no_fail, failed_checks(result))


def parity(
    model: str = typer.Argument(
        ...,
        help="Exported model (.onnx or .engine), or triton://HOST:PORT/MODEL on a Triton server.",
    ),
    checkpoint: Optional[Path] = typer.Argument(
        None,
        metavar="[CKPT]",
        help="Reference checkpoint (default: the one the model was exported from, as it records).",
    ),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="A folder of held-out images (default: the test split of the data set the checkpoint was trained on).",
    ),
    n: int = typer.Option(200, "--n", min=1, help="Images compared."),
    no_fail: bool = typer.Option(False, "--no-fail", help=NO_FAIL_HELP),
    batch: int = typer.Option(
        8,
        "--batch",
        min=1,
        help="Images per forward pass (memory; a fixed-batch model uses its own).",
    ),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        help="Run the model on this runtime device (default: ONNX Runtime CPU for .onnx), e.g. openvino or "
        "openvino:GPU.",
    ),
    precision: Optional[str] = typer.Option(None, "--precision", help="OpenVINO only: fp32 (default) or bf16."),
) -> None:
    """Compare an exported model with the PyTorch reference on real images; writes parity.json."""
    from runtime.backends.triton_backend import is_triton_url
    from wscnet.checkpoint import read_checkpoint
    from wscnet.errors import UserError

    from .exporter import parity_images
    from .parity import format_report, run_parity, save_parity
    from .provenance import check_model_matches, model_file_metadata, recorded_checkpoint

    served = is_triton_url(model)  # a model on a server: no folder here for parity.json
    model_path = model if served else Path(model)
    name = Path(model).name  # a file's name, or the served model's
    metadata = model_file_metadata(model_path)
    recorded = checkpoint is None
    checkpoint = checkpoint or recorded_checkpoint(model_path, metadata)
    check_model_matches(model_path, metadata, checkpoint, read_checkpoint(checkpoint))  # before any output
    images = parity_images(checkpoint, data, n, "--data")
    if images is None:
        raise UserError(f"{checkpoint}: no training data folder recorded in it; pass --data DIR")
    report = run_parity(model_path, checkpoint, images, n=n, batch=batch, device=device, precision=precision)
    if recorded:
        log.info(f"using the checkpoint {name} was exported from: {checkpoint}")
    log.info(f"parity images: {images.description}")
    typer.echo(format_report(report))
    if not served:
        key = f"{name} [{report['backend']}]" if device else None
        typer.echo(f"saved {save_parity(report, model_path, key=key)}")
    fail_unless(no_fail, [] if report["passed"] else [name])


def fail_unless(no_fail: bool, failed: list[str]) -> None:
    """Exit code 3 (one line) when a check failed, unless --no-fail."""
    from wscnet.errors import CheckFailed

    if failed and not no_fail:
        raise CheckFailed(f"parity below its targets: {'; '.join(failed)} (files written; --no-fail exits 0)")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(parity)
