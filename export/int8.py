"""FP32 ONNX -> INT8 Q/DQ ONNX, calibrated on real images.

Explicit quantization as TensorRT 10/11 builds INT8 engines from it: symmetric activations,
symmetric per-channel weights (zero points 0). ONNX Runtime's CPU provider fuses the Q/DQ pairs
into QLinearConv / QGemm kernels. The fused CrossSpatialPoolMap node, the softmaxes and the
reductions stay in float32 (they are not in ``QUANTIZED_OPS``).
"""

import tempfile
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from wscnet.atomic import atomic_write_bytes
from wscnet.errors import UserError

from .fp16 import _load
from .images import find_images, load_image
from .metadata import read_metadata, set_precision

CALIB_METHODS = ("entropy", "max", "percentile")
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "Concat", "Mul"]


class ImageCalibrationReader:
    """onnxruntime.quantization CalibrationDataReader over image files, one image per batch."""

    def __init__(self, files: list[Path], input_name: str, size: int, mean, std) -> None:
        self.files, self.input_name = files, input_name
        self.size, self.mean, self.std = size, mean, std
        self._iter = None
        self._bar = None

    def get_next(self):
        if self._iter is None:
            self._bar = tqdm(total=len(self.files), desc="calibrating", unit="img", leave=False)
            self._iter = iter(self.files)
        path = next(self._iter, None)
        if path is None:
            self._bar.close()
            return None
        self._bar.update(1)
        return {self.input_name: load_image(path, self.size, self.mean, self.std)[None]}

    def rewind(self) -> None:
        self._iter = None


def quantize_int8(
    fp32_onnx: Path, out: Path, calib_dir: Path, *, n: int = 256, method: str = "entropy"
) -> Path:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}; got {method!r}")
    if n < 1:
        raise UserError(f"--calib-n must be at least 1; got {n}")
    model = _load(fp32_onnx)
    metadata = read_metadata(model)
    if metadata.get("precision", "fp32") != "fp32":
        raise UserError(f"{fp32_onnx}: INT8 quantization starts from the FP32 model, this one is {metadata['precision']}")
    files = find_images(calib_dir, n)
    size = int(metadata["input_size"])
    mean, std = _json_list(metadata["mean"]), _json_list(metadata["std"])
    reader = ImageCalibrationReader(files, model.graph.input[0].name, size, mean, std)
    calibrate_method = {
        "entropy": CalibrationMethod.Entropy,
        "max": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    with tempfile.TemporaryDirectory(prefix="wscnet-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # ORT's optimizer pass would inline the fused node's function: shape inference only.
        quant_pre_process(str(fp32_onnx), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate_method,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        result = onnx.load(str(quantized))
    _restore_functions(result, model)
    set_precision(result, "int8")
    onnx.checker.check_model(result, full_check=True)
    atomic_write_bytes(out, result.SerializeToString())
    return Path(out)


def _restore_functions(result: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Keep the fused node's local function, its opset import and the metadata of ``source``."""
    names = {(f.domain, f.name) for f in result.functions}
    for function in source.functions:
        if (function.domain, function.name) not in names:
            result.functions.append(function)
    domains = {o.domain for o in result.opset_import}
    for opset in source.opset_import:
        if opset.domain not in domains:
            result.opset_import.append(opset)
    del result.metadata_props[:]
    result.metadata_props.extend(source.metadata_props)
    result.ir_version = source.ir_version


def _json_list(value: str) -> list[float]:
    import json

    return [float(v) for v in json.loads(value)]
