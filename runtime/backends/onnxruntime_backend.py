"""ONNX Runtime back-end: CPU, and the CUDA / TensorRT execution providers where they are installed."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import RuntimeUserError
from ..metadata import ModelMetadata
from .base import OUTPUT_NAMES, Backend

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDERS_FOR_DEVICE = {
    "auto": (TENSORRT, CUDA, CPU),
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
}


def session_options(threads: int = 0) -> ort.SessionOptions:
    """Full graph optimisation, sequential execution, ``threads`` intra-op threads (0: ORT's default)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers etc. are noise here
    return options


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device``, best first; a GPU device that is not installed is an error."""
    wanted = PROVIDERS_FOR_DEVICE[device]
    if device in ("cuda", "tensorrt") and wanted[0] not in available:
        raise RuntimeUserError(
            f"--device {device} needs onnxruntime's {wanted[0]}, but this onnxruntime offers only "
            f"{', '.join(available)} (install onnxruntime-gpu)"
        )
    return [p for p in wanted if p in available]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, device: str = "auto", threads: int = 0) -> None:
        self.device = device
        self.threads = threads
        self.session: ort.InferenceSession | None = None

    def load(self, path: str | Path) -> None:
        path = Path(path)
        options = session_options(self.threads)
        providers = choose_providers(self.device, ort.get_available_providers())
        provider_options = [self._provider_options(p, path) for p in providers]
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers, provider_options=provider_options
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeUserError(f"{path}: ONNX Runtime cannot load this model: {first}") from None
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, path)
        self._check_io(path)

    def _provider_options(self, provider: str, path: Path) -> dict:
        if provider == TENSORRT:  # build once, reuse: engines land beside the model
            return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(path.parent)}
        return {}

    def _check_io(self, path: Path) -> None:
        inputs = self.session.get_inputs()
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if len(inputs) != 1 or missing:
            raise RuntimeUserError(
                f"{path}: expected one input and outputs {', '.join(OUTPUT_NAMES)}; "
                f"found inputs {[i.name for i in inputs]}, outputs {sorted(outputs)}"
            )
        self.input_name = inputs[0].name
        batch_dim = inputs[0].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers() if self.session else []

    @property
    def description(self) -> str:
        return f"onnxruntime[{','.join(self.providers)}]"

    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.loaded(self.session)
        results = self.session.run(OUTPUT_NAMES, {self.input_name: batch})
        return dict(zip(OUTPUT_NAMES, results))

    def close(self) -> None:
        self.session = None
