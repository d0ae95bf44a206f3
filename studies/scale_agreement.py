"""Scales of the bounded INT8 calibration against onnxruntime's one-shot one, same images.

    python cli.py study scale-agreement MODEL.onnx CALIB_DIR [--n 16] [--method entropy] [--json OUT] [--keep DIR]
    python cli.py study scale-agreement MODEL.onnx CALIB_DIR --ort-option max-intermediate|strided [--chunk 4]

``--ort-option``: instead of ours, onnxruntime's own ways to bound calibration memory, against
its one-shot run: ``CalibMaxIntermediateOutputs`` (min-max only) or ``CalibStridedMinMax``
(``collect_data`` per chunk of images, any method).

Prints (and writes) whether every QuantizeLinear scale is equal, the largest relative
difference, and each calibration's peak RSS (the bounded one runs first: the process's
high-water mark after it is its own).
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.worker import peak_rss_mb
from export.int8 import qdq_scales, quantize_int8


def compare(model: Path, calib: Path, n: int, method: str, keep: Path | None = None) -> dict:
    """``keep``: a folder to keep the bounded model in (``bounded-METHOD.int8.onnx``), for parity."""
    with tempfile.TemporaryDirectory(prefix="agreement-") as tmp:
        bounded_path = quantize_int8(model, Path(tmp) / "b.onnx", calib, n=n, method=method)
        bounded = qdq_scales(bounded_path)
        bounded_peak = peak_rss_mb()
        one_shot = qdq_scales(quantize_int8(model, Path(tmp) / "u.onnx", calib, n=n, method=method, bounded=False))
        one_shot_peak = peak_rss_mb()
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bounded_path, keep / f"bounded-{method}.int8.onnx")
    if bounded.keys() != one_shot.keys():
        raise SystemExit("the two models quantize different tensors")
    rel = [float(np.max(np.abs(bounded[k] - v) / np.maximum(np.abs(v), 1e-30))) for k, v in one_shot.items()]
    return {
        "scales": len(rel),
        "equal_scales": all(np.array_equal(bounded[k], v) for k, v in one_shot.items()),
        "max_rel_diff": max(rel),
        "bounded_peak_mb": round(bounded_peak),
        "one_shot_peak_mb": round(max(one_shot_peak, bounded_peak)),
    }


class _ListReader:
    """Calibration inputs from a list, with the ``set_range`` that CalibStridedMinMax needs."""

    def __init__(self, feeds: list) -> None:
        self.feeds, self._todo = feeds, iter(feeds)

    def get_next(self):
        return next(self._todo, None)

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._todo = iter(self.feeds[start_index:end_index])


def compare_ort_option(model: Path, calib: Path, n: int, method: str, option: str, chunk: int) -> dict:
    """One of onnxruntime's memory options against its one-shot calibration (scales only)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from export.calibration import CalibrationImages, ort_method
    from export.images import find_images
    from export.int8 import QUANTIZED_OPS, prepare_for_calibration, qdq_scales
    from export.onnx_metadata import model_contract

    contract = model_contract(onnx.load(str(model), load_external_data=False), str(model))
    images = CalibrationImages(find_images(calib, n), "image", contract)
    feeds = list(images)
    extra = {"max-intermediate": {"CalibMaxIntermediateOutputs": chunk}, "strided": {"CalibStridedMinMax": chunk}}[
        option
    ]
    scales = {}
    with tempfile.TemporaryDirectory(prefix="ort-option-") as tmp:
        prepared = prepare_for_calibration(model, Path(tmp))
        for name, options in (("one-shot", {}), (option, extra)):
            out = Path(tmp) / f"{name}.onnx"
            try:
                quantize_static(
                    str(prepared),
                    str(out),
                    _ListReader(feeds),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=QUANTIZED_OPS,
                    per_channel=True,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=ort_method(method),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, **options},
                )
            except Exception as exc:  # what the option does is the finding
                return {"option": option, "method": method, "error": f"{type(exc).__name__}: {exc}"[:200]}
            scales[name] = qdq_scales(out)
    ref, got = scales["one-shot"], scales[option]
    rel = [float(np.max(np.abs(got[k] - v) / np.maximum(np.abs(v), 1e-30))) for k, v in ref.items()]
    return {
        "option": option,
        "method": method,
        "chunk": chunk,
        "scales": len(rel),
        "equal_scales": all(np.array_equal(got[k], v) for k, v in ref.items()),
        "max_rel_diff": max(rel),
    }


def print_scale_agreement(
    model: Path,
    calib: Path,
    n: int,
    method: str,
    json_out: Path | None,
    keep: Path | None,
    ort_option: str | None,
    chunk: int,
) -> dict:
    """``python cli.py study scale-agreement``: one JSON line (also to ``json_out``)."""
    if ort_option:
        result = compare_ort_option(model, calib, n, method, ort_option, chunk)
    else:
        result = compare(model, calib, n, method, keep)
    print(json.dumps(result))
    if json_out:
        json_out.write_text(json.dumps(result) + "\n")
    return result
