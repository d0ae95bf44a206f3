"""INT8 calibration in bounded memory: peak RSS flat in the number of images, the same scales.

Peak memory is each calibration's own process's RSS high-water mark (VmHWM), measured in a fresh
subprocess; nothing is timed. The reference scales come from onnxruntime's one-shot calibration
(``quantize_int8(..., bounded=False)``), an implementation independent of the streaming one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.int8 import qdq_scales, quantize_int8
from export.onnx_export import export_onnx
from export.testing import make_trained_checkpoint, write_image_folder

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
from pathlib import Path
from export.int8 import quantize_int8
from benchmarks.worker import peak_rss_mb
fp32, calib, n, bounded, out, method = sys.argv[1:]
quantize_int8(Path(fp32), Path(out), Path(calib), n=int(n), method=method, bounded=bounded == "1")
print(json.dumps({"peak_mb": peak_rss_mb()}))
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    ckpt = make_trained_checkpoint(root / "ckpt.pt", size=64, steps=2)
    # 160 px: each image's calibrated tensors are ~40 MB, so keeping them all would show at once
    fp32 = export_onnx(ckpt, root / "model.onnx", img_size=160)
    calib = write_image_folder(root / "calib", num_classes=6, per_class=4, size=64, seed=3)
    return {"root": root, "fp32": fp32, "calib": calib}


def _calibration_peak_mb(small, n: int, bounded: bool, method: str = "entropy") -> float:
    out = small["root"] / f"int8_{n}_{int(bounded)}_{method}.onnx"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(small["fp32"]),
            str(small["calib"]),
            str(n),
            str(int(bounded)),
            str(out),
            method,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file()
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.parametrize("method", ["entropy", "percentile"])  # min-max ranges; streamed histograms
def test_calibration_peak_memory_is_flat_in_the_number_of_images(small, method):
    few, many = _calibration_peak_mb(small, 6, True, method), _calibration_peak_mb(small, 24, True, method)
    assert many < few * 1.10, f"6 images: {few:.0f} MB, 24 images: {many:.0f} MB"


def test_one_shot_calibration_grows_with_the_images(small):
    """The check above can fail: onnxruntime's own calibration keeps every image's tensors."""
    few, many = _calibration_peak_mb(small, 6, False), _calibration_peak_mb(small, 24, False)
    assert many > few * 1.10, f"6 images: {few:.0f} MB, 24 images: {many:.0f} MB"


@pytest.mark.parametrize("method", ["max", "entropy", "percentile"])
def test_streaming_scales_equal_the_one_shot_calibration(small, tmp_path, method):
    fp32 = export_onnx(small["root"] / "ckpt.pt", tmp_path / "model64.onnx")
    bounded = qdq_scales(quantize_int8(fp32, tmp_path / "b.onnx", small["calib"], n=10, method=method))
    one_shot = qdq_scales(quantize_int8(fp32, tmp_path / "u.onnx", small["calib"], n=10, method=method, bounded=False))
    assert len(bounded) > 40 and bounded.keys() == one_shot.keys()
    for name, scale in one_shot.items():
        np.testing.assert_array_equal(bounded[name], scale, err_msg=name)
