"""Back-ends: the model file decides which one runs (``.onnx`` → ONNX Runtime, ``.engine``/``.plan`` →
TensorRT), unless the device asks for OpenVINO (``openvino``, ``openvino:CPU``, ``openvino:GPU``); a
``triton://HOST:PORT/MODEL`` address is a model on a Triton Inference Server."""

import os
from pathlib import Path

from ..choices import DEVICES, ENGINE_SUFFIXES, is_openvino_device, is_triton_url
from ..errors import RuntimeUserError
from ..validate import check_runtime_model
from .base import OUTPUT_NAMES, Backend


def open_backend(path: str | Path, device: str = "auto", threads: int = 0, precision: str | None = None) -> Backend:
    """Load ``path`` with the back-end its suffix (or an ``openvino`` device) calls for; ready to infer.

    ``device`` chooses ONNX Runtime's execution providers (auto: TensorRT, CUDA, CPU, whichever
    are present) or OpenVINO and its device; an engine always runs on its GPU. ``auto`` on a
    machine without a GPU provider measures the CPU back-ends the file allows and keeps the
    fastest that matches ONNX Runtime (``probe.open_fastest``; ``backend.choice`` says why). ``threads``:
    inference threads (0 = the back-end's default, -1 = all cores but one, see
    ``inference_threads``). ``precision``: OpenVINO's float type, ``fp32`` (default) or ``bf16``;
    every other back-end runs the file's own precision.
    """
    if is_triton_url(path):  # the server runs the model; device and threads are its business
        return open_triton(str(path))
    path = Path(path)
    openvino = is_openvino_device(device)
    if device not in DEVICES and not openvino:
        raise RuntimeUserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if precision is not None and not openvino:
        raise RuntimeUserError(
            f"--precision {precision} needs an OpenVINO device; "
            "ONNX Runtime and TensorRT run the precision of the model file"
        )
    if not path.is_file():
        raise RuntimeUserError(f"{path}: model file not found")
    if device == "auto" and path.suffix.lower() == ".onnx" and precision is None and not gpu_providers():
        from .probe import open_fastest

        return open_fastest(path, inference_threads(threads), backend_for)
    backend = backend_for(path, device, inference_threads(threads), precision)
    backend.load(path)
    backend.choice = {"device": device, "reason": f"--device {device}"}
    return backend


def gpu_providers() -> list[str]:
    """ONNX Runtime's GPU execution providers installed here (none: ``auto`` probes the CPU back-ends)."""
    import onnxruntime

    return [
        p for p in onnxruntime.get_available_providers() if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    ]


def backend_for(path: Path, device: str, threads: int, precision: str | None) -> Backend:
    """The (not yet loaded) back-end for the file's suffix, or an OpenVINO device's."""
    suffix = path.suffix.lower()
    openvino = is_openvino_device(device)
    if suffix == ".onnx" and openvino:
        from .openvino_backend import OpenVinoBackend

        return OpenVinoBackend(device=device, threads=threads, precision=precision)
    if suffix == ".onnx":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(device=device, threads=threads)
    if suffix in ENGINE_SUFFIXES:
        if device == "cpu" or openvino:
            raise RuntimeUserError(
                f"{path}: a TensorRT engine runs only on a GPU with TensorRT, not with --device {device}"
            )
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend()
    check_runtime_model(path)  # a checkpoint: says how to export it
    raise RuntimeUserError(f"{path}: unknown model type {suffix!r}; expected .onnx, .engine or .plan")


def open_triton(url: str) -> Backend:
    from .triton_backend import TritonBackend

    backend = TritonBackend()
    try:
        backend.load(url)
    except BaseException:
        backend.close()
        raise
    return backend


def inference_threads(threads: int) -> int:
    """Inference threads for a setting: -1 leaves one core to capture and drawing (which then
    overlap inference; at least one thread), 0 keeps the back-end's own default, n is n."""
    if threads < -1:
        raise RuntimeUserError(f"threads must be -1, 0 or a positive count; got {threads}")
    if threads == -1:
        return max(1, (os.cpu_count() or 2) - 1)
    return threads


__all__ = ["Backend", "DEVICES", "OUTPUT_NAMES", "inference_threads", "open_backend"]
