"""What one ``export`` asks for: the options of ``python cli.py export`` as a dataclass, their defaults
written once here (the CLI reads them), and the checks that need no work (no torch, no onnx)."""

from dataclasses import dataclass
from pathlib import Path

from runtime.backends.tensorrt_backend import sidecar_path
from wscnet.checkpoint_path import check_checkpoint_path
from wscnet.errors import UserError

from .choices import FORMATS, QUANTIZERS

# what each export step writes, after the request's file stem (``model`` by default)
FILE_SUFFIXES = {
    "fp32": ".onnx",
    "fp16": ".fp16.onnx",
    "int8": ".int8.onnx",
    "int8-trt": ".int8-trt.onnx",
    "int8-modelopt": ".int8-modelopt.onnx",
}


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
    int8_float: str | None = None  # nodes INT8 keeps float (export.int8.float_nodes); None: the arch's layout
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
    overwrite: bool = False  # replace model files already in ``out``
    quantizer: str = "ort"  # "ort": onnxruntime's ranges, both layouts; "modelopt": also NVIDIA ModelOpt's
    modelopt_python: str | None = None
    fold_normalization: bool = False
    name: str = "model"  # the files' stem: model.onnx, model.fp16.onnx, ...
    decide_views: bool = True  # measure one view against two on held-out camera frames (export.views)

    def __post_init__(self) -> None:
        if self.format == "triton":  # the server forms batches of any size up to --max-batch
            self.dynamic_batch = True

    def file(self, kind: str) -> Path:
        """Where the step ``kind`` (a FILE_SUFFIXES key) writes its model."""
        return self.out / (self.name + FILE_SUFFIXES[kind])

    def engine_file(self, precision: str) -> Path:
        return self.out / f"{self.name}.{precision}.engine"

    def planned_files(self) -> list[Path]:
        """The model files this export writes into ``out`` (parity.json is merged, not replaced)."""
        files = [self.file("fp32")]
        files += [self.file("fp16")] if self.fp16 else []
        files += [self.file("int8"), self.file("int8-trt")] if self.int8 else []
        files += [self.file("int8-modelopt")] if self.int8 and self.quantizer == "modelopt" else []
        if self.format == "engine":
            engine = self.engine_file("int8" if self.int8 else "fp16" if self.fp16 else "fp32")
            files += [engine, sidecar_path(engine)]
        if self.format == "triton":
            from .triton_repo import MODEL_NAMES

            files += [self.out / name / "config.pbtxt" for name in MODEL_NAMES]
        return files

    def validate(self) -> None:
        """Every check that needs no work, so a wrong request is one line before anything runs."""
        from runtime.validate import check_output_folder

        if self.format not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if self.quantizer not in QUANTIZERS:
            raise UserError(f"--quantizer must be one of {', '.join(QUANTIZERS)}; got {self.quantizer!r}")
        if self.fp16 and self.int8 and self.format == "engine":
            raise UserError("an engine has one precision: choose one of --fp16 and --int8")
        check_checkpoint_path(self.checkpoint)
        check_output_folder(self.out, "--out")
        existing = [p.name for p in self.planned_files() if p.exists()]
        if existing and not self.overwrite:
            raise UserError(
                f"{self.out}: already holds {', '.join(existing)}; pass --overwrite to "
                "replace them or --out to write elsewhere"
            )
        for folder, option in ((self.calib, "--calib"), (self.parity_data, "--parity-data")):
            if folder is not None and not Path(folder).is_dir():
                raise UserError(f"{folder}: image folder not found ({option})")
