"""The back-ends bench knows, what file each needs, and why one cannot run on this machine."""

import importlib.util
from dataclasses import dataclass

import onnxruntime as ort


@dataclass(frozen=True)
class BackendSpec:
    name: str  # as typed in --backends
    engine: str  # "torch" (eager reference), "onnx" (ONNX Runtime), "openvino", "tensorrt" or "triton"
    precision: str  # fp32 | fp16 | bf16 | int8: what the row asks to compute in
    device: str  # cpu | cuda | server (the Triton server's own)

    @property
    def file_precision(self) -> str:
        """The model file the row runs: BF16 is OpenVINO's choice at load time, from the fp32 file."""
        return "fp32" if self.precision == "bf16" else self.precision

    def open_args(self) -> dict:
        """``runtime.backends.open_backend`` arguments of a runtime row (device, precision)."""
        if self.engine == "openvino":
            return {"device": f"openvino:{self.device.upper()}",
                    "precision": "bf16" if self.precision == "bf16" else None}
        return {"device": self.device, "precision": None}


SPECS = {
    spec.name: spec
    for spec in (
        BackendSpec("torch", "torch", "fp32", "cpu"),
        BackendSpec("ort", "onnx", "fp32", "cpu"),
        BackendSpec("ort-fp16", "onnx", "fp16", "cpu"),
        BackendSpec("ort-int8", "onnx", "int8", "cpu"),
        BackendSpec("ov", "openvino", "fp32", "cpu"),
        BackendSpec("ov-bf16", "openvino", "bf16", "cpu"),
        BackendSpec("ov-int8", "openvino", "int8", "cpu"),
        BackendSpec("torch-cuda", "torch", "fp32", "cuda"),
        BackendSpec("ort-cuda", "onnx", "fp32", "cuda"),
        BackendSpec("ort-cuda-fp16", "onnx", "fp16", "cuda"),
        BackendSpec("trt-fp16", "tensorrt", "fp16", "cuda"),
        BackendSpec("trt-int8", "tensorrt", "int8", "cuda"),
        BackendSpec("triton", "triton", "fp32", "server"),  # a triton://HOST:PORT/MODEL input, as served
    )
}
DEFAULT_BACKENDS = ("torch", "ort", "ort-fp16", "ort-int8", "ov", "ov-bf16", "ov-int8", "torch-cuda", "ort-cuda",
                    "trt-fp16", "trt-int8")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def skip_reason(spec: BackendSpec) -> str | None:
    """Why ``spec`` cannot run here (one line), or None when it can."""
    if spec.engine == "openvino":
        return openvino_skip_reason(spec)
    if spec.engine == "triton":
        return None if importlib.util.find_spec("tritonclient") else "tritonclient is not installed (pip install -e '.[triton]')"
    if spec.device == "cpu":
        return None
    if not cuda_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    if spec.engine == "onnx" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"
    if spec.engine == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install tensorrt)"
    return None


def openvino_skip_reason(spec: BackendSpec) -> str | None:
    from runtime.backends.openvino_backend import openvino_devices
    from runtime.errors import RuntimeUserError

    try:
        devices = {d["name"]: d for d in openvino_devices()}
    except RuntimeUserError as exc:  # not installed
        return str(exc)
    device = spec.device.upper()
    if device not in devices:
        return f"OpenVINO has no {device} device here (it sees {', '.join(devices) or 'none'})"
    if spec.precision == "bf16" and "BF16" not in devices[device]["capabilities"]:
        return f"this {device} cannot compute in BF16 (no AVX-512 BF16 / AMX)"
    return None
