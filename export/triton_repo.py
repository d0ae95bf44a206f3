"""``export --format triton``: a Triton Inference Server model repository beside the exported ONNX.

Layout and fields follow Triton's model repository and model configuration documents
(``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/<file>``; the ``ModelConfig``
protobuf, which the tests parse every written config with):

- ``wscnet_python``: the python backend running the ONNX through ONNX Runtime on CPU instances,
  for CPU servers (and the tests here, where the nvidia-pytriton wheel's server has only that backend);
- ``wscnet_onnx``: the ``onnxruntime`` backend on GPU instances, optionally with the TensorRT execution
  accelerator in FP16, for GPU servers (not served here: no onnxruntime backend in the wheel).

Every config carries the model's metadata (class names, input contract, precision, ...) as string
``parameters``, which the runtime's Triton back-end reads with ``json.loads``.
"""

import json
import shutil
from pathlib import Path

import onnx

from wscnet.atomic import atomic_write_text

from .metadata import read_metadata

PYTHON_MODEL = "wscnet_python"
ONNX_MODEL = "wscnet_onnx"
MODEL_NAMES = (PYTHON_MODEL, ONNX_MODEL)
# Dynamic batching: a request waits at most this long for others to join its batch. 2 ms costs a
# single camera little and lets frames from several cameras meet in one batch.
MAX_QUEUE_DELAY_US = 2000
CPU_INSTANCES = 1  # one ONNX Runtime session per instance; it uses the threads below
PYTHON_THREADS = 2
TYPE_FP32 = "TYPE_FP32"


def tensor_dims(model: onnx.ModelProto) -> tuple[list, list]:
    """[(name, dims without the batch)] of the graph's inputs and outputs (all float32 at the edges)."""
    def dims(values):
        return [(v.name, [d.dim_value or -1 for d in v.type.tensor_type.shape.dim][1:]) for v in values]

    initializers = {i.name for i in model.graph.initializer}
    return dims([v for v in model.graph.input if v.name not in initializers]), dims(model.graph.output)


def _tensors(kind: str, tensors: list) -> str:
    body = ",\n".join(f'  {{ name: "{name}" data_type: {TYPE_FP32} dims: [ {", ".join(map(str, dims))} ] }}'
                      for name, dims in tensors)
    return f"{kind} [\n{body}\n]"


def _parameters(values: dict[str, str]) -> str:
    return "\n".join(f"parameters {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(str(value), ensure_ascii=False)} }} }}"
                     for key, value in sorted(values.items()))


def config_text(name: str, backend: str, model: onnx.ModelProto, max_batch: int, kind: str,
                parameters: dict[str, str], extra: str = "") -> str:
    """One complete ``config.pbtxt``."""
    inputs, outputs = tensor_dims(model)
    parts = [
        f'name: "{name}"', f'backend: "{backend}"', f"max_batch_size: {max_batch}",
        _tensors("input", inputs), _tensors("output", outputs),
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}",
        f"instance_group [ {{ count: {CPU_INSTANCES} kind: {kind} }} ]",
        _parameters({**read_metadata(model), **parameters}), extra,
    ]
    return "\n".join(part for part in parts if part) + "\n"


def write_python_model(onnx_file: Path, repo: Path, max_batch: int) -> Path:
    """``wscnet_python``: ONNX Runtime on CPU inside the python backend."""
    model = onnx.load(str(onnx_file), load_external_data=False)
    folder = repo / PYTHON_MODEL
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(onnx_file, folder / "1" / "model.onnx")
    shutil.copy2(Path(__file__).with_name("triton_python_model.py"), folder / "1" / "model.py")
    text = config_text(PYTHON_MODEL, "python", model, max_batch, "KIND_CPU", {"intra_op_threads": str(PYTHON_THREADS)})
    atomic_write_text(folder / "config.pbtxt", text)
    return folder


def tensorrt_accelerator() -> str:
    """ONNX Runtime's TensorRT execution provider in FP16 (Triton's ``optimization`` block)."""
    return ('optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
            'parameters { key: "precision_mode" value: "FP16" } } ] } }')


def write_onnx_model(onnx_file: Path, repo: Path, max_batch: int, tensorrt_fp16: bool = False) -> Path:
    """``wscnet_onnx``: the onnxruntime backend on a GPU (Triton's own backend; not served here)."""
    model = onnx.load(str(onnx_file), load_external_data=False)
    folder = repo / ONNX_MODEL
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(onnx_file, folder / "1" / "model.onnx")
    extra = tensorrt_accelerator() if tensorrt_fp16 else ""
    text = config_text(ONNX_MODEL, "onnxruntime", model, max_batch, "KIND_GPU", {}, extra)
    atomic_write_text(folder / "config.pbtxt", text)
    return folder


def write_triton_repository(onnx_file: Path, repo: Path, max_batch: int, tensorrt_fp16: bool = False) -> list[Path]:
    """Both models into ``repo``; returns their config files."""
    folders = [write_python_model(onnx_file, repo, max_batch),
               write_onnx_model(onnx_file, repo, max_batch, tensorrt_fp16)]
    return [folder / "config.pbtxt" for folder in folders]
