"""What the numbers were measured on, and the arithmetic ceiling of that machine.

The peak is measured, not looked up: a large matrix product in the same run, so each row's
achieved GFLOP/s can be read against what this machine actually sustains right now (other
processes on a shared CPU lower both alike).
"""

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess

LIBRARIES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxscript",
    "openvino",
    "opencv-python-headless",
    "numpy",
    "tensorrt",
    "cuda-python",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def gpu_info() -> dict | None:
    """Name, driver, CUDA runtime of GPU 0, or None when there is none (without torch: what
    nvidia-smi says, no CUDA runtime)."""
    smi = nvidia_smi_query("name,memory.total,compute_cap,driver_version")
    if importlib.util.find_spec("torch") is None:
        if not smi:
            return None
        name, memory_mib, capability, driver = smi[0]
        return {
            "name": name,
            "memory_gb": round(float(memory_mib) / 1024, 1),
            "compute_capability": capability,
            "cuda_runtime": None,
            "driver": driver,
        }
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gb": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda_runtime": torch.version.cuda,
        "driver": smi[0][3] if smi else None,
    }


def describe_machine() -> dict:
    """The CPU, memory, load, GPU and library versions (psutil and torch where installed)."""
    physical, memory_gb, torch_threads = None, None, None
    if importlib.util.find_spec("psutil") is not None:
        import psutil

        physical, memory_gb = psutil.cpu_count(logical=False), round(psutil.virtual_memory().total / 2**30, 1)
    else:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_threads = torch.get_num_threads()
    return {
        "cpu": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": physical,
        "torch_threads": torch_threads,
        "memory_gb": memory_gb,
        "load_avg_1m_start": round(os.getloadavg()[0], 2),  # > cores: others share the CPU
        "os": platform.platform(),
        "gpu": gpu_info(),
        "versions": library_versions(),
    }


def _best_rate(step, flops: float, reps: int, sync=lambda: None) -> float:
    """GFLOP/s of the fastest of ``reps`` calls (the ceiling, not the typical call)."""
    from .measure import time_interleaved

    times = time_interleaved({"step": lambda: (step(), sync())}, warmup=1, rounds=reps)["step"]
    return flops / (min(times) / 1e3) / 1e9


def measure_peak(n: int = 2048, reps: int = 10, device: str = "cpu") -> dict[str, float]:
    """Measured GFLOP/s (GOP/s for int8) of an n×n×n matrix product: fp32, and int8 where cheap.

    On the CPU the fp32 figure is the better of torch's and ONNX Runtime's (MLAS) products, so
    no back-end in the table beats "the peak" merely by having the faster GEMM library.
    """
    flops = 2.0 * n**3
    if importlib.util.find_spec("torch") is None:  # the lean install: numpy's product (its BLAS)
        return numpy_peak(n, flops, reps)
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    peak = {"matmul_n": n, "fp32_gflops_torch": _best_rate(lambda: a @ b, flops, reps, sync)}
    if device == "cpu":
        peak["fp32_gflops_ort"] = _ort_matmul_rate(a.numpy(), b.numpy(), flops, reps)
    peak["fp32_gflops"] = max(peak["fp32_gflops_torch"], peak.get("fp32_gflops_ort", 0.0))
    if device == "cuda":
        a16, b16 = a.half(), b.half()
        peak["fp16_gflops"] = _best_rate(lambda: a16 @ b16, flops, reps, sync)
    try:  # int8 × int8 → int32, the kernel an int8 model leans on; absent on some builds
        a8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, generator=gen).to(device)
        peak["int8_gops"] = _best_rate(lambda: torch._int_mm(a8, b8), flops, reps, sync)
    except (RuntimeError, AttributeError, NotImplementedError):
        pass
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in peak.items()}


def numpy_peak(n: int, flops: float, reps: int) -> dict[str, float]:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    rate = round(_best_rate(lambda: a @ b, flops, reps), 1)
    return {"matmul_n": n, "fp32_gflops_numpy": rate, "fp32_gflops": rate}


def _ort_matmul_rate(a, b, flops: float, reps: int) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = a.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return _best_rate(lambda: session.run(None, {"a": a, "b": b}), flops, reps)


def installed_version(package: str) -> str | None:
    """The installed distribution's version, or None (read from its metadata, nothing imported)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_smi_query(fields: str) -> list[list[str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]
