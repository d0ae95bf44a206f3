"""What ``python cli.py export`` and ``parity`` do, step by step (heavy imports live here)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from runtime.backends.tensorrt_backend import sidecar_path
from wscnet.errors import UserError

from .images import ImageSet, folder_images, split_images
from .log import log
from .onnx_metadata import read_metadata
from .request import ExportRequest

RUNS_GLOB = "runs/**/best.pt"


def newest_checkpoint(root: Path = Path(".")) -> Path:
    """The newest ``best.pt`` anywhere under ``runs/``, by modification time."""
    found = sorted(Path(root).glob(RUNS_GLOB), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no checkpoint given and none found at {RUNS_GLOB}: train first or pass CKPT")
    return found[-1]


def recorded_data(checkpoint: Path, option: str) -> dict | None:
    """The data set the checkpoint was trained on (its data_source; older runs: their last.pt).
    An unreadable ``checkpoint`` is one UserError line; an unreadable last.pt beside it is skipped."""
    from wscnet.checkpoint import read_checkpoint, recorded_data_source

    source = recorded_data_source(read_checkpoint(checkpoint))
    if not source:
        sibling = _readable_sibling(checkpoint.with_name("last.pt"))
        source = recorded_data_source(sibling) if isinstance(sibling, dict) else None
    if source and not Path(source["data"]).is_dir():
        raise UserError(
            f"{checkpoint}: its training data folder {source['data']} is gone (moved or deleted); pass {option} DIR"
        )
    return source or None


def _readable_sibling(path: Path) -> dict | None:
    """The checkpoint dict at ``path``, or None when there is none or it cannot be read."""
    import torch

    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable sibling is not this command's problem
        return None


def calibration_images(req: ExportRequest) -> ImageSet:
    """--calib DIR (every image below it), else the training split of the recorded data set."""
    if req.calib is not None:
        return folder_images(req.calib, req.calib_n)
    source = recorded_data(req.checkpoint, "--calib")
    if source is None:
        raise UserError(f"{req.checkpoint}: no training data recorded in it; pass --calib DIR")
    return split_images(source, "train", req.calib_n)


def parity_images(checkpoint: Path, folder: Path | None, n: int, option: str = "--parity-data") -> ImageSet | None:
    """A folder of held-out images, else the test split of the recorded data set (never train)."""
    if folder is not None:
        return folder_images(folder, n)
    source = recorded_data(checkpoint, option)
    return split_images(source, "test", n) if source else None


def check_disjoint(calibration: ImageSet, parity: ImageSet) -> None:
    shared = set(map(Path.resolve, calibration.files)) & set(map(Path.resolve, parity.files))
    if shared:
        raise UserError(
            f"parity images ({parity.description}) include {len(shared)} calibration images "
            f"({calibration.description}): pass held-out images with --parity-data"
        )


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    parity: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_export(req: ExportRequest, echo=log.info) -> ExportResult:
    """Every file ``req`` asks for, with parity; ``echo`` gets the reports (parity tables, Q/DQ layouts)."""
    req.validate()
    if req.format == "engine":
        from .tensorrt_build import import_tensorrt

        import_tensorrt()  # one clear line before any work when TensorRT is missing
    calibration = calibration_images(req) if req.int8 else None
    held_out = parity_images(req.checkpoint, req.parity_data, req.parity_n) if req.parity else None
    if calibration is not None and held_out is not None:
        check_disjoint(calibration, held_out)
    result = ExportResult()
    final = export_onnx_files(req, calibration, result, echo)
    if req.parity and held_out is None:
        result.notes.append("parity skipped: no held-out images (pass --parity-data DIR)")
    if held_out is not None:
        log.info(f"parity images: {held_out.description}")
        for model in result.files:
            result.parity[model.name] = _checked(model, req.checkpoint, held_out, echo)
    if req.format == "engine":
        engine = export_engine(req, final, echo)
        result.files += [engine, sidecar_path(engine)]
        if held_out is not None:
            result.parity[engine.name] = _checked(engine, req.checkpoint, held_out, echo)
    if req.format == "triton":
        from .triton_repo import write_triton_repository

        fp32 = req.file("fp32")  # the GPU models' file; the CPU models run the INT8 one when there is one
        result.files += write_triton_repository(
            fp32, req.out, req.max_batch, tensorrt_fp16=req.fp16, cpu_onnx=final if req.int8 else fp32
        )
    return result


def export_onnx_files(req: ExportRequest, calibration: ImageSet | None, result: ExportResult, echo) -> Path:
    """FP32 (and FP16 / INT8) ONNX files into ``result.files``; returns the one an engine builds from."""
    fp32 = export_fp32(req)
    result.files.append(fp32)
    if req.decide_views:  # before the other files copy the FP32 file's metadata
        from .views import decide_and_record

        result.notes.append(decide_and_record(fp32, recorded_data(req.checkpoint, "--parity-data"), req.parity_n))
    final = fp32
    if req.fp16:
        final = export_fp16(req, fp32)
        result.files.append(final)
    if calibration is not None:
        ort_int8, trt_int8 = export_int8(req, fp32, calibration, echo)
        result.files += [ort_int8, trt_int8]
        final = trt_int8 if req.format == "engine" else ort_int8
        if req.quantizer == "modelopt":
            final = _modelopt_int8(req, calibration, echo)
            result.files.append(final)
    return final


def export_fp32(req: ExportRequest) -> Path:
    """The FP32 ONNX model every other file is made from."""
    from .onnx_export import export_onnx

    fp32 = export_onnx(
        req.checkpoint,
        req.file("fp32"),
        img_size=req.img_size,
        batch=req.batch,
        dynamic_batch=req.dynamic_batch,
        fused_op=req.fused_op,
    )
    if req.fold_normalization:
        _fold_normalization(fp32)
    return fp32


def export_fp16(req: ExportRequest, fp32: Path) -> Path:
    from .fp16 import convert_fp16

    return convert_fp16(fp32, req.file("fp16"))


def export_int8(req: ExportRequest, fp32: Path, calibration: ImageSet, echo=log.info) -> tuple[Path, Path]:
    """The INT8 Q/DQ model (onnxruntime's layout) and its TensorRT-layout twin, one calibration."""
    from .int8 import quantize_int8

    log.info(f"calibration images: {calibration.description}")
    ort_int8 = quantize_int8(fp32, req.file("int8"), calibration, method=req.calib_method, keep_float=req.int8_float)
    return ort_int8, write_trt_int8(fp32, ort_int8, req.file("int8-trt"), echo)


def export_engine(req: ExportRequest, onnx_file: Path, echo) -> Path:
    from .tensorrt_build import build_engine

    precision = read_metadata(onnx.load(str(onnx_file), load_external_data=False))["precision"]
    return build_engine(
        onnx_file,
        req.engine_file(precision),
        precision=precision,
        min_batch=1,
        opt_batch=req.batch,
        max_batch=max(req.batch, req.max_batch),
        workspace_mb=req.workspace_mb,
        timing_cache=req.out / "timing.cache",
        use_plugin=req.trt_plugin,
        echo=echo,
    )


def _checked(model: Path, checkpoint: Path, images: ImageSet, echo) -> dict:
    from .parity import format_report, run_parity, save_parity

    report = run_parity(model, checkpoint, images)
    save_parity(report, model)
    echo(format_report(report))
    return report


def _fold_normalization(path: Path) -> None:
    from wscnet.atomic import atomic_write_bytes

    from .deepstream import fold_normalization

    model = onnx.load(str(path))
    fold_normalization(model)
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(path, model.SerializeToString())


def write_trt_int8(fp32: Path, ort_int8: Path, out: Path, echo=log.info) -> Path:
    """The TensorRT-layout INT8 file from the FP32 model and the ranges calibrated for ``ort_int8``;
    ``echo`` gets the Q/DQ layout of both INT8 files."""
    from wscnet.atomic import atomic_write_bytes

    from .qdq_layout import amax_from_qdq_model, check_layout, write_trt_layout

    ort_model = onnx.load(str(ort_int8))
    model, missing = write_trt_layout(onnx.load(str(fp32)), amax_from_qdq_model(ort_model))
    if missing:
        log.warning(
            f"{out.name}: no calibrated range for {len(missing)} tensor(s), left float: {', '.join(missing[:3])}"
        )
    atomic_write_bytes(out, model.SerializeToString())
    for path, checked in ((ort_int8, ort_model), (out, model)):
        echo(check_layout(checked).line(path.name))
    return out


def _modelopt_int8(req: ExportRequest, calibration: ImageSet, echo=log.info) -> Path:
    """``model.int8-modelopt.onnx``: ModelOpt on the plain-ops export (it drops local functions)."""
    import tempfile

    from .modelopt_quant import quantize_modelopt
    from .onnx_export import export_onnx
    from .qdq_layout import check_layout

    out = req.file("int8-modelopt")
    with tempfile.TemporaryDirectory(prefix="wscnet-plain-") as tmp:
        plain = export_onnx(
            req.checkpoint,
            Path(tmp) / "model.plain.onnx",
            img_size=req.img_size,
            batch=req.batch,
            dynamic_batch=req.dynamic_batch,
            fused_op=False,
        )
        quantize_modelopt(plain, out, calibration, method=req.calib_method, python=req.modelopt_python)
    echo(check_layout(onnx.load(str(out))).line(out.name))
    return out


def summary_lines(result: ExportResult) -> list[str]:
    lines = [f"{'file':<26} {'size MB':>8} {'precision':>9} {'opset':>5}  parity"]
    for path in result.files:
        if path.suffix == ".pbtxt":
            lines.append(f"{path.parent.name + '/':<26} Triton model ({path.parent.name}/config.pbtxt, 1/)")
            continue
        if path.suffix == ".json":
            continue
        precision, opset = "?", "-"
        if path.suffix == ".onnx":
            model = onnx.load(str(path), load_external_data=False)
            precision = read_metadata(model).get("precision", "?")
            opset = str(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
        else:
            sidecar = json.loads(sidecar_path(path).read_text())
            precision = sidecar["metadata"].get("precision", "?")
        report = result.parity.get(path.name)
        parity = "-"
        if report:
            parity = (
                f"top-1 {report['top1_agreement'] * 100:.1f} %, probs max abs "
                f"{report['outputs']['probs']['max_abs']:.2g}, map corr {report['map_correlation']:.4f}, "
                f"{'PASS' if report['passed'] else 'FAIL'}"
            )
        size = path.stat().st_size / 2**20
        lines.append(f"{path.name:<26} {size:>8.2f} {precision:>9} {opset:>5}  {parity}")
    return lines + result.notes


def failed_checks(result: ExportResult) -> list[str]:
    """The files whose parity missed its targets, e.g. ``model.int8.onnx (top-1 91.0 %)``."""
    return [
        f"{name} (top-1 {r['top1_agreement'] * 100:.1f} %, map corr {r['map_correlation']:.4f})"
        for name, r in result.parity.items()
        if not r["passed"]
    ]
