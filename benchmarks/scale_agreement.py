"""Scales of the bounded INT8 calibration against onnxruntime's one-shot one, same images.

    python -m benchmarks.scale_agreement MODEL.onnx CALIB_DIR [--n 16] [--method entropy] [--json OUT]

Prints (and writes) whether every QuantizeLinear scale is equal, the largest relative
difference, and each calibration's peak RSS (the bounded one runs first: the process's
high-water mark after it is its own).
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from export.int8 import qdq_scales, quantize_int8

from .worker import peak_rss_mb


def compare(model: Path, calib: Path, n: int, method: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="agreement-") as tmp:
        bounded = qdq_scales(quantize_int8(model, Path(tmp) / "b.onnx", calib, n=n, method=method))
        bounded_peak = peak_rss_mb()
        one_shot = qdq_scales(quantize_int8(model, Path(tmp) / "u.onnx", calib, n=n, method=method, bounded=False))
        one_shot_peak = peak_rss_mb()
    if bounded.keys() != one_shot.keys():
        raise SystemExit("the two models quantize different tensors")
    rel = [float(np.max(np.abs(bounded[k] - v) / np.maximum(np.abs(v), 1e-30))) for k, v in one_shot.items()]
    return {"scales": len(rel), "equal_scales": all(np.array_equal(bounded[k], v) for k, v in one_shot.items()),
            "max_rel_diff": max(rel), "bounded_peak_mb": round(bounded_peak),
            "one_shot_peak_mb": round(max(one_shot_peak, bounded_peak))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("calib", type=Path)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = compare(args.model, args.calib, args.n, args.method)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
