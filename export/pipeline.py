"""What ``python cli.py export`` and ``parity`` do, step by step (heavy imports live here)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from wscnet.errors import UserError

from .images import ImageSet, folder_images, split_images
from .metadata import read_metadata

RUNS_GLOB = "runs/**/best.pt"


def newest_checkpoint(root: Path = Path(".")) -> Path:
    """The newest ``best.pt`` anywhere under ``runs/``, by modification time."""
    found = sorted(Path(root).glob(RUNS_GLOB), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no checkpoint given and none found at {RUNS_GLOB}: train first or pass CKPT")
    return found[-1]


def recorded_data(checkpoint: Path) -> dict | None:
    """The data set the checkpoint was trained on (its data_source; older runs: their last.pt)."""
    import torch

    from wscnet.checkpoint import recorded_data_source

    for candidate in (checkpoint, checkpoint.with_name("last.pt")):
        if not candidate.is_file():
            continue
        try:
            ckpt = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception:  # an unreadable sibling is not this command's problem
            continue
        source = recorded_data_source(ckpt) if isinstance(ckpt, dict) else None
        if source:
            if not Path(source["data"]).is_dir():
                raise UserError(f"{checkpoint}: its training data {source['data']} is not there any more "
                                "(moved or deleted?); pass the images explicitly")
            return source
    return None


def calibration_images(req: "ExportRequest") -> ImageSet:
    """--calib DIR (every image below it), else the training split of the recorded data set."""
    if req.calib is not None:
        return folder_images(req.calib, req.calib_n)
    source = recorded_data(req.checkpoint)
    if source is None:
        raise UserError(f"{req.checkpoint}: no training data recorded in it; pass --calib DIR")
    return split_images(source, "train", req.calib_n)


def parity_images(checkpoint: Path, folder: Path | None, n: int) -> ImageSet | None:
    """A folder of held-out images, else the test split of the recorded data set (never train)."""
    if folder is not None:
        return folder_images(folder, n)
    source = recorded_data(checkpoint)
    return split_images(source, "test", n) if source else None


def check_disjoint(calibration: ImageSet, parity: ImageSet) -> None:
    shared = set(map(Path.resolve, calibration.files)) & set(map(Path.resolve, parity.files))
    if shared:
        raise UserError(f"parity images ({parity.description}) include {len(shared)} calibration images "
                        f"({calibration.description}): pass held-out images with --parity-data")


@dataclass
class ExportRequest:
    checkpoint: Path
    out: Path
    format: str = "onnx"
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    calib_n: int = 256
    calib_method: str = "entropy"
    img_size: int | None = None
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: int = 16
    fused_op: bool = True
    parity_data: Path | None = None
    parity_n: int = 200
    parity: bool = True
    workspace_mb: int = 2048
    trt_plugin: bool = False


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    parity: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_export(req: ExportRequest, echo=print) -> ExportResult:
    from .fp16 import convert_fp16
    from .int8 import quantize_int8
    from .onnx_export import export_onnx

    if req.format not in ("onnx", "engine"):
        raise UserError(f"--format must be onnx or engine; got {req.format!r}")
    if req.fp16 and req.int8 and req.format == "engine":
        raise UserError("an engine has one precision: choose one of --fp16 and --int8")
    if req.format == "engine":
        from .tensorrt_build import import_tensorrt

        import_tensorrt()  # one clear line before any work when TensorRT is missing
    calibration = calibration_images(req) if req.int8 else None
    held_out = parity_images(req.checkpoint, req.parity_data, req.parity_n) if req.parity else None
    if calibration is not None and held_out is not None:
        check_disjoint(calibration, held_out)
    result = ExportResult()
    fp32 = export_onnx(
        req.checkpoint, req.out / "model.onnx", img_size=req.img_size, batch=req.batch,
        dynamic_batch=req.dynamic_batch, fused_op=req.fused_op,
    )
    result.files.append(fp32)
    final = fp32
    if req.fp16:
        final = convert_fp16(fp32, req.out / "model.fp16.onnx")
        result.files.append(final)
    if calibration is not None:
        echo(f"calibration images: {calibration.description}")
        final = quantize_int8(fp32, req.out / "model.int8.onnx", calibration, method=req.calib_method)
        result.files.append(final)
    if req.parity and held_out is None:
        result.notes.append("parity skipped: no held-out images (pass --parity-data DIR)")
    if held_out is not None:
        echo(f"parity images: {held_out.description}")
        for model in result.files:
            result.parity[model.name] = _checked(model, req.checkpoint, held_out, echo)
    if req.format == "engine":
        from .tensorrt_build import build_engine

        precision = read_metadata(onnx.load(str(final), load_external_data=False))["precision"]
        engine = build_engine(
            final, req.out / f"model.{precision}.engine", precision=precision,
            min_batch=1, opt_batch=req.batch, max_batch=max(req.batch, req.max_batch),
            workspace_mb=req.workspace_mb, timing_cache=req.out / "timing.cache",
            use_plugin=req.trt_plugin,
        )
        result.files += [engine, engine.with_name(engine.name + ".json")]
        if held_out is not None:
            result.parity[engine.name] = _checked(engine, req.checkpoint, held_out, echo)
    return result


def _checked(model: Path, checkpoint: Path, images: ImageSet, echo) -> dict:
    from .parity import format_report, run_parity, save_parity

    report = run_parity(model, checkpoint, images)
    save_parity(report, model)
    echo(format_report(report))
    return report


def summary_lines(result: ExportResult) -> list[str]:
    lines = [f"{'file':<26} {'size MB':>8} {'precision':>9} {'opset':>5}  parity"]
    for path in result.files:
        if path.suffix == ".json":
            continue
        precision, opset = "?", "-"
        if path.suffix == ".onnx":
            model = onnx.load(str(path), load_external_data=False)
            precision = read_metadata(model).get("precision", "?")
            opset = str(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
        else:
            sidecar = json.loads(path.with_name(path.name + ".json").read_text())
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
