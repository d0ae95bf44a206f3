"""The back-ends bench knows, what file each needs, and why one cannot run on this machine."""

import importlib.util
from dataclasses import dataclass

import onnxruntime as ort


@dataclass(frozen=True)
class BackendSpec:
    name: str  # as typed in --backends
    engine: str  # "torch" (eager reference), "onnx" (ONNX Runtime) or "tensorrt"
    precision: str  # fp32 | fp16 | int8
    device: str  # cpu | cuda


SPECS = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "torch", "fp32", "cpu"),
        BackendSpec("ort", "onnx", "fp32", "cpu"),
        BackendSpec("ort-fp16", "onnx", "fp16", "cpu"),
        BackendSpec("ort-int8", "onnx", "int8", "cpu"),
        BackendSpec("torch-cuda", "torch", "fp32", "cuda"),
        BackendSpec("ort-cuda", "onnx", "fp32", "cuda"),
        BackendSpec("ort-cuda-fp16", "onnx", "fp16", "cuda"),
        BackendSpec("trt-fp16", "tensorrt", "fp16", "cuda"),
        BackendSpec("trt-int8", "tensorrt", "int8", "cuda"),
    )
}
DEFAULT_BACKENDS = ("torch", "ort", "ort-fp16", "ort-int8", "torch-cuda", "ort-cuda", "trt-fp16", "trt-int8")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def skip_reason(spec: BackendSpec) -> str | None:
    """Why ``spec`` cannot run here (one line), or None when it can."""
    if spec.device == "cpu":
        return None
    if not cuda_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    if spec.engine == "onnx" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"
    if spec.engine == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install tensorrt)"
    return None
