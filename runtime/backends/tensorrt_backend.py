"""TensorRT engine back-end (TensorRT 10/11 named-tensor API).

An engine is tied to the TensorRT version and the GPU model it was built with, so the sidecar
``X.engine.json`` is read and checked before deserializing. Pinned host buffers, device buffers
and one CUDA stream are allocated once per input shape; every frame is H2D → execute_async_v3 →
D2H on that stream.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import RuntimeUserError
from ..metadata import ModelMetadata
from .base import OUTPUT_NAMES, Backend

if TYPE_CHECKING:  # the static check (.ci/typecheck) reads NVIDIA's stubs for these
    import tensorrt


@dataclass(frozen=True)
class EngineSidecar:
    metadata: ModelMetadata
    tensorrt_version: str
    gpu_name: str
    compute_capability: str | None
    built_from: str | None
    io: dict
    plugins: tuple[str, ...] = ()  # "namespace::name" ids the loading process must have registered


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise RuntimeUserError(
            f"{engine_path}: sidecar {path.name} not found; the runtime needs it for class names, "
            "input size and the TensorRT version / GPU the engine was built for"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuntimeUserError(f"{path}: not a readable JSON sidecar ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        raise RuntimeUserError(f'{path}: sidecar has no "metadata" object')
    for key in ("tensorrt_version", "gpu_name"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RuntimeUserError(f"{path}: sidecar lacks {key!r}")
    return EngineSidecar(
        metadata=ModelMetadata.from_props(data["metadata"], path),
        tensorrt_version=data["tensorrt_version"],
        gpu_name=data["gpu_name"],
        compute_capability=_optional_str(data.get("compute_capability")),
        built_from=_optional_str(data.get("built_from")),
        io=data.get("io") or {},
        plugins=tuple(str(p) for p in data.get("plugins") or ()),
    )


def _optional_str(value) -> str | None:
    return None if value is None else str(value)


def check_compatibility(engine_path, sidecar: EngineSidecar, tensorrt_version: str, gpu_name: str) -> None:
    """One line explaining why this engine cannot run here, before TensorRT fails obscurely."""
    built, here = _release(sidecar.tensorrt_version), _release(tensorrt_version)
    if built != here:
        raise RuntimeUserError(
            f"{engine_path}: built with TensorRT {sidecar.tensorrt_version} but TensorRT "
            f"{tensorrt_version} is installed; engines only run on the version that built them — "
            f"rebuild it here (python cli.py export CKPT --format engine) or install TensorRT {sidecar.tensorrt_version}"
        )
    if _gpu_key(sidecar.gpu_name) != _gpu_key(gpu_name):
        raise RuntimeUserError(
            f"{engine_path}: built for GPU {sidecar.gpu_name!r} but this GPU is {gpu_name!r}; "
            "engines are tied to the GPU model — rebuild it on this machine"
        )


def check_plugins(engine_path, sidecar: EngineSidecar, registry) -> None:
    """An engine built with a plugin deserializes only where that plugin is registered."""
    known = {f"{c.plugin_namespace}::{c.name}" for c in getattr(registry, "all_creators", ())}
    missing = [p for p in sidecar.plugins if p not in known]
    if missing:
        raise RuntimeUserError(
            f"{engine_path}: built with plugin {', '.join(missing)}, which is not registered in this "
            "process (an engine from an older exporter); rebuild it: python cli.py export CKPT "
            "--format engine [--trt-plugin] writes engines that need no registration"
        )


def _release(version: str) -> tuple[str, ...]:
    return tuple(version.strip().split(".")[:3])  # 10.13.0.35 and 10.13.0 are the same release


def _gpu_key(name: str) -> str:
    return " ".join(name.lower().replace("nvidia", "").split())


def dims_tuple(dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` (indexable, sized) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def resolve_input_shape(engine_shape: tuple, batch_shape: tuple, name: str) -> tuple[int, ...]:
    """Check a batch against the engine's input shape (-1 = dynamic) and return the concrete shape."""
    engine_shape, batch_shape = tuple(engine_shape), tuple(batch_shape)
    if len(engine_shape) != len(batch_shape) or any(e != -1 and e != b for e, b in zip(engine_shape, batch_shape)):
        shown = "×".join("N" if e == -1 else str(e) for e in engine_shape)
        raise RuntimeUserError(f"engine input {name!r} takes {shown}, got a batch of {'×'.join(map(str, batch_shape))}")
    return batch_shape


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, trt_module=None, cuda_api=None) -> None:
        self._trt = trt_module  # injectable for tests; imported lazily otherwise
        self._cuda = cuda_api
        self.engine: "tensorrt.ICudaEngine | None" = None
        self.context: "tensorrt.IExecutionContext | None" = None
        self._shape: tuple | None = None
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}

    def load(self, path: str | Path) -> None:
        path = Path(path)
        sidecar = read_sidecar(path)
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt or _import_tensorrt()
        self._trt = trt
        self._cuda = self._cuda or _open_cuda()
        check_compatibility(path, sidecar, trt.__version__, self._cuda.gpu_name())
        if sidecar.plugins:
            check_plugins(path, sidecar, trt.get_plugin_registry())
        self.metadata = sidecar.metadata
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeUserError(f"{path}: TensorRT could not deserialize this engine (see its log above)")
        self.engine, self.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        missing = [n for n in OUTPUT_NAMES if n not in names]
        if len(inputs) != 1 or missing:
            raise RuntimeUserError(
                f"{path}: expected one input and outputs {', '.join(OUTPUT_NAMES)}; found tensors {names}"
            )
        self.input_name = inputs[0]
        self.outputs = [n for n in names if n != self.input_name]
        batch_dim = dims_tuple(engine.get_tensor_shape(self.input_name))[0]
        self.fixed_batch = batch_dim if batch_dim > 0 else None

    @property
    def description(self) -> str:
        return f"tensorrt[{getattr(self._trt, '__version__', '?')}]"

    def _allocate(self, batch_shape: tuple) -> None:
        """(Re)allocate pinned host and device buffers for one input shape; bind their addresses."""
        self._free_buffers()
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        engine, context = self.engine, self.context
        assert engine is not None and context is not None, "load() first"
        shape = resolve_input_shape(dims_tuple(engine.get_tensor_shape(self.input_name)), batch_shape, self.input_name)
        context.set_input_shape(self.input_name, shape)
        for name in [self.input_name, *self.outputs]:
            tensor_shape = dims_tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in tensor_shape):
                raise RuntimeUserError(f"engine tensor {name!r} has unresolved shape {tensor_shape}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.pinned_empty(tensor_shape, dtype)
            self._device[name] = self._cuda.device_alloc(self._host[name].nbytes)
            context.set_tensor_address(name, self._device[name])
        self._shape = tuple(batch_shape)

    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        context = self.loaded(self.context)
        if tuple(batch.shape) != self._shape:
            self._allocate(tuple(batch.shape))
        host_in = self._host[self.input_name]
        np.copyto(host_in, batch, casting="same_kind")
        self._cuda.htod_async(self._device[self.input_name], host_in)
        if not context.execute_async_v3(self._cuda.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name in OUTPUT_NAMES:
            self._cuda.dtoh_async(self._host[name], self._device[name])
        self._cuda.synchronize()
        # host buffers are reused by the next frame: hand out copies, as float32 like ONNX Runtime
        return {name: self._host[name].astype(np.float32, copy=True) for name in OUTPUT_NAMES}

    def _free_buffers(self) -> None:
        for array in self._host.values():
            self._cuda.free_pinned(array)
        for ptr in self._device.values():
            self._cuda.device_free(ptr)
        self._host, self._device, self._shape = {}, {}, None

    def close(self) -> None:
        if self._cuda is not None:
            self._free_buffers()
            self._cuda.close()
            self._cuda = None
        self.context = None
        self.engine = None


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise RuntimeUserError(
            "this is a TensorRT engine but the tensorrt package is not installed "
            "(pip install 'wscnet-edge[tensorrt]', or run the .onnx model instead)"
        ) from None
    major = int(tensorrt.__version__.split(".")[0])
    if major < 10:
        raise RuntimeUserError(f"TensorRT {tensorrt.__version__} is installed; the runtime needs TensorRT 10 or 11")
    return tensorrt


def _open_cuda():
    from .cuda_memory import open_cuda_api

    return open_cuda_api()
