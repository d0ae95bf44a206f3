"""INT8 by NVIDIA TensorRT Model Optimizer (``--quantizer modelopt``), run in its own environment.

``nvidia-modelopt[onnx]`` pins ``onnx~=1.21`` and, on x86 Linux, ``onnxruntime-gpu~=1.24``, which
clash with this project's pins, so it lives in a separate virtual environment whose Python is
given by ``--modelopt-python`` or ``WSCNET_MODELOPT_PYTHON`` (or this interpreter, if it can import
modelopt). Its calibration runs on ONNX Runtime's CPU execution provider.

ModelOpt's pre-processing drops model-local ONNX functions, so it quantizes the model exported
with plain ONNX ops (``--no-fused-op``): the Eq. (1)+(3) ops stay float, as ModelOpt only
quantizes Conv / Gemm / MatMul inputs and residual Adds.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from wscnet.atomic import atomic_write_bytes
from wscnet.errors import UserError

from .images import ImageSet, folder_images, load_image
from .onnx_metadata import model_contract, read_metadata, write_metadata
from .qdq_layout import LAYOUT_KEY

PYTHON_ENV = "WSCNET_MODELOPT_PYTHON"
METHODS = ("entropy", "max")
_SCRIPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
model, calib, out, method = sys.argv[1:5]
quantize(model, quantize_mode="int8", calibration_data=np.load(calib, mmap_mode="r"),
         calibration_method=method, calibration_eps=["cpu"], output_path=out, high_precision_dtype="fp32")
"""


def modelopt_python(given: str | None = None) -> str:
    """The interpreter that has nvidia-modelopt: the given one, $WSCNET_MODELOPT_PYTHON, or this one."""
    candidate = given or os.environ.get(PYTHON_ENV) or sys.executable
    probe = subprocess.run([candidate, "-c", "import modelopt.onnx.quantization"], capture_output=True, timeout=300)
    if probe.returncode != 0:
        raise UserError(
            f"nvidia-modelopt is not importable by {candidate}; create a separate environment "
            f"(python -m venv mo && mo/bin/pip install 'nvidia-modelopt[onnx]') and pass --modelopt-python "
            f"mo/bin/python or set {PYTHON_ENV}"
        )
    return candidate


def write_calibration_array(plain_onnx: Path, images: ImageSet, out: Path) -> Path:
    """The calibration images as one N×3×S×S float32 .npy (the model's input contract), written image by image."""
    contract = model_contract(onnx.load(str(plain_onnx), load_external_data=False), str(plain_onnx))
    size = contract.input_size
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(images), 3, size, size))
    for i, path in enumerate(images.files):
        array[i] = load_image(path, contract)
    array.flush()
    return out


def quantize_modelopt(
    plain_onnx: Path,
    out: Path,
    images: ImageSet | Path,
    *,
    n: int = 256,
    method: str = "entropy",
    python: str | None = None,
) -> Path:
    """INT8 Q/DQ of a plain-ops FP32 model by ModelOpt; metadata copied, precision int8, layout modelopt.

    ``images``: an ImageSet, or a folder of which ``n`` images are used."""
    if method not in METHODS:
        raise UserError(f"--quantizer modelopt calibrates with {' or '.join(METHODS)}, not {method!r}")
    if not isinstance(images, ImageSet):
        images = folder_images(Path(images), n)
    interpreter = modelopt_python(python)
    with tempfile.TemporaryDirectory(prefix="wscnet-modelopt-") as tmp:
        calib = write_calibration_array(plain_onnx, images, Path(tmp) / "calib.npy")
        quantized = Path(tmp) / "int8.onnx"
        run = subprocess.run(
            [interpreter, "-c", _SCRIPT, str(plain_onnx), str(calib), str(quantized), method],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if run.returncode != 0 or not quantized.is_file():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{plain_onnx}: ModelOpt quantization failed: {last[:300]}")
        model = onnx.load(str(quantized))
    metadata = read_metadata(onnx.load(str(plain_onnx), load_external_data=False))
    write_metadata(model, {**metadata, "precision": "int8", LAYOUT_KEY: "modelopt"})
    atomic_write_bytes(out, model.SerializeToString())
    return Path(out)
