"""Back-ends: the model file decides which one runs (``.onnx`` → ONNX Runtime, ``.engine``/``.plan`` → TensorRT)."""

from pathlib import Path

from ..errors import RuntimeUserError
from .base import OUTPUT_NAMES, Backend

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan")


def open_backend(path: str | Path, device: str = "auto", threads: int = 0) -> Backend:
    """Load ``path`` with the back-end its suffix calls for and return it ready to infer.

    ``device`` chooses ONNX Runtime's execution providers (auto: TensorRT, CUDA, CPU, whichever
    are present); an engine always runs on its GPU. ``threads``: ONNX Runtime intra-op threads
    (0 = its default).
    """
    path = Path(path)
    if device not in DEVICES:
        raise RuntimeUserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if not path.is_file():
        raise RuntimeUserError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnxruntime_backend import OnnxRuntimeBackend

        backend: Backend = OnnxRuntimeBackend(device=device, threads=threads)
    elif suffix in ENGINE_SUFFIXES:
        if device == "cpu":
            raise RuntimeUserError(f"{path}: a TensorRT engine runs only on a GPU, not with --device cpu")
        from .tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend()
    else:
        from ..validate import check_runtime_model

        check_runtime_model(path)  # a checkpoint: says how to export it
        raise RuntimeUserError(f"{path}: unknown model type {suffix!r}; expected .onnx, .engine or .plan")
    backend.load(path)
    return backend


__all__ = ["Backend", "DEVICES", "OUTPUT_NAMES", "open_backend"]
