"""The back-ends bench knows, what file each needs, and why one cannot run on this machine.

(The runtime's back-ends themselves are ``runtime/backends``; these are bench's rows over them.)
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path


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
            return {
                "device": f"openvino:{self.device.upper()}",
                "precision": "bf16" if self.precision == "bf16" else None,
            }
        return {"device": self.device, "precision": None}


# engine -> (name prefix, {device: precisions}). A row's name is the prefix, then "-cuda" where the
# engine also runs on the CPU, then the precision unless fp32: "ort", "ort-cuda-fp16", "trt-int8".
ENGINES = {
    "torch": ("torch", {"cpu": ("fp32",), "cuda": ("fp32",)}),
    "onnx": ("ort", {"cpu": ("fp32", "fp16", "int8"), "cuda": ("fp32", "fp16")}),
    "openvino": ("ov", {"cpu": ("fp32", "bf16", "int8")}),
    "tensorrt": ("trt", {"cuda": ("fp16", "int8")}),
    "triton": ("triton", {"server": ("fp32",)}),  # a triton://HOST:PORT/MODEL input, as served
}
# measured only when asked for: TensorRT's row is the GPU's fp16 figure; triton needs a server
OPT_IN = ("ort-cuda-fp16", "triton")


def spec_name(engine: str, precision: str, device: str) -> str:
    prefix, devices = ENGINES[engine]
    on_cuda = "-cuda" if device == "cuda" and "cpu" in devices else ""
    return prefix + on_cuda + ("" if precision == "fp32" else f"-{precision}")


SPECS = {  # CPU rows first, then GPU rows, then the server's: the order of bench's tables
    spec.name: spec
    for spec in (
        BackendSpec(spec_name(engine, precision, device), engine, precision, device)
        for device in ("cpu", "cuda", "server")
        for engine, (_, devices) in ENGINES.items()
        for precision in devices.get(device, ())
    )
}
DEFAULT_BACKENDS = tuple(name for name in SPECS if name not in OPT_IN)


# the runtime's device names (``webcam --device``) for the row that runs the same way
DEVICE_ALIASES = {"cpu": "ort", "cuda": "ort-cuda", "tensorrt": "trt-fp16", "openvino": "ov", "openvino:CPU": "ov"}
TORCH_MISSING = "torch is not installed (training and export need the [train] extra)"


def canonical_backend(name: str) -> str:
    """A row name as typed: a row of ``SPECS``, a runtime device name, or ``openvino-…`` for ``ov-…``."""
    if name in SPECS:
        return name
    if name.startswith("openvino-"):
        return "ov-" + name.removeprefix("openvino-")
    return DEVICE_ALIASES.get(name, name)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    """A CUDA GPU is visible: torch says so where it is installed, else ONNX Runtime's CUDA provider
    or TensorRT with a driver (the lean runtime install has no torch)."""
    if torch_installed():
        import torch

        return torch.cuda.is_available()
    if "CUDAExecutionProvider" in onnxruntime_providers():
        return True
    return importlib.util.find_spec("tensorrt") is not None and Path("/proc/driver/nvidia").exists()


def skip_reason(spec: BackendSpec) -> str | None:
    """Why ``spec`` cannot run here (one line), or None when it can."""
    if spec.engine == "torch" and not torch_installed():
        return TORCH_MISSING
    if spec.engine == "openvino":
        return openvino_skip_reason(spec)
    if spec.engine == "triton":
        return (
            None
            if importlib.util.find_spec("tritonclient")
            else "tritonclient is not installed (pip install 'wscnet-edge[triton]')"
        )
    if spec.device == "cpu":
        return None
    if not cuda_available():
        return (
            "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
            if torch_installed()
            else "no CUDA GPU visible (no CUDA provider in onnxruntime, no TensorRT with an NVIDIA driver)"
        )
    if spec.engine == "onnx" and "CUDAExecutionProvider" not in onnxruntime_providers():
        return "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"
    if spec.engine == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install tensorrt)"
    return None


def onnxruntime_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


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
