"""OpenVINO back-end: the same .onnx files as ONNX Runtime, on Intel / AMD CPUs (and Intel GPUs).

OpenVINO's ONNX reader has no rule for the fused ``wscnet::CrossSpatialPoolMap`` node, but the
file carries the node's body as a model-local ONNX function of standard ops; such a model is
read again with that function inlined (the ``onnx`` package, part of the ``[openvino]`` extra),
so OpenVINO runs exactly the body ONNX Runtime runs.

Precision is explicit: a float file runs with the f32 inference-precision hint unless BF16 is
asked for (OpenVINO's default on CPUs with AVX-512 BF16 / AMX would otherwise be BF16, silently);
a Q/DQ file runs its quantized layers in INT8 and the rest in the hinted float type.
``executed_precision`` reads what the compiled model really does from its execution graph.
"""

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import RuntimeUserError
from ..metadata import ModelMetadata
from .base import OUTPUT_NAMES, Backend

PREFIX = "openvino"
DEFAULT_DEVICE = "CPU"
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # float type of what a file does not quantize
MATMUL_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")
INT8_TYPES = ("u8", "i8")
# what the INT8 exporter quantizes (export/int8.py QUANTIZED_OPS), and the ReLU between them
QUANTIZED_CONSUMERS = {"Convolution", "GroupConvolution", "MatMul", "Add", "MaxPool", "Relu"}
INSTALL_HINT = "pip install 'wscnet-edge[openvino]'"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise RuntimeUserError(f"the OpenVINO back-end needs the openvino package ({INSTALL_HINT})") from None
    return openvino


def openvino_target(device: str) -> str:
    """``openvino`` → CPU; ``openvino:GPU`` → GPU (any OpenVINO device name, e.g. ``AUTO``, ``GPU.1``)."""
    target = device[len(PREFIX) + 1 :] if device.startswith(PREFIX + ":") else ""
    return target.upper() or DEFAULT_DEVICE


def openvino_devices() -> list[dict]:
    """Each device OpenVINO sees here: name, full name, and the precisions it can compute in."""
    core = import_openvino().Core()
    devices = []
    for name in core.available_devices:
        devices.append(
            {
                "name": name,
                "full_name": str(_property(core, name, "FULL_DEVICE_NAME") or name),
                "capabilities": [str(c) for c in _property(core, name, "OPTIMIZATION_CAPABILITIES") or ()],
            }
        )
    return devices


def _property(core, device: str, key: str):
    try:
        return core.get_property(device, key)
    except Exception:  # a plugin that does not offer this property
        return None


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, device: str = PREFIX, threads: int = 0, precision: str | None = None) -> None:
        if precision is not None and precision not in PRECISION_HINTS:
            raise RuntimeUserError(
                f"OpenVINO precision {precision!r}: choose {' or '.join(PRECISION_HINTS)} "
                "(INT8 comes from a Q/DQ model file)"
            )
        if threads < 0:
            raise ValueError("threads must be >= 0 (0: OpenVINO's default)")
        self.target = openvino_target(device)
        self.threads = threads
        self.float_precision = precision or "fp32"
        self.compiled = None

    def load(self, path: str | Path) -> None:
        path = Path(path)
        ov = import_openvino()
        core = ov.Core()
        if self.target not in core.available_devices and self.target not in ("AUTO", "MULTI", "HETERO"):
            raise RuntimeUserError(
                f"OpenVINO has no device {self.target!r} here; it sees {', '.join(core.available_devices)}"
            )
        self._check_bf16(core)
        model = read_onnx(core, path)
        self.metadata = ModelMetadata.from_props(framework_metadata(model), path)
        self._check_io(model, path)
        if self.metadata.precision == "int8":
            keep_float_ops_in_float(model)
        try:
            self.compiled = core.compile_model(model, self.target, self.compile_config())
        except Exception as exc:
            raise RuntimeUserError(
                f"{path}: OpenVINO cannot compile this model for {self.target}: {_last_line(exc)}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]
        self._executed = executed_precision(self.compiled)

    def compile_config(self) -> dict:
        """Latency hint (one stream, one request at a time), the float precision asked for and,
        when given, the thread count: what a small box running a camera needs."""
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.float_precision]}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return config

    def _check_bf16(self, core) -> None:
        if self.float_precision != "bf16" or self.target in ("AUTO", "MULTI", "HETERO"):
            return
        capabilities = _property(core, self.target, "OPTIMIZATION_CAPABILITIES") or ()
        if "BF16" not in capabilities:
            raise RuntimeUserError(
                f"OpenVINO {self.target} cannot compute in BF16 here (it offers {', '.join(capabilities)}); "
                "BF16 needs a CPU with AVX-512 BF16 or AMX"
            )

    def _check_io(self, model, path: Path) -> None:
        names = {name for output in model.outputs for name in output.get_names()}
        missing = [name for name in OUTPUT_NAMES if name not in names]
        if len(model.inputs) != 1 or missing:
            raise RuntimeUserError(
                f"{path}: expected one input and outputs {', '.join(OUTPUT_NAMES)}; "
                f"found {len(model.inputs)} inputs, outputs {sorted(names)}"
            )
        batch_dim = model.inputs[0].get_partial_shape()[0]
        self.fixed_batch = batch_dim.get_length() if batch_dim.is_static else None

    @property
    def executed_precision(self) -> str:
        return self._executed

    @property
    def description(self) -> str:
        return f"openvino[{self.target},{self._executed if self.compiled else '?'}]"

    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.loaded(self.compiled)
        self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        # the request reuses its output tensors on the next call: hand out copies
        return {
            name: self.request.get_tensor(output).data.astype(np.float32, copy=True)
            for name, output in zip(OUTPUT_NAMES, self.outputs)
        }

    def close(self) -> None:
        self.request = None
        self.compiled = None


def read_onnx(core, path: Path):
    """The ONNX model as an OpenVINO model; one OpenVINO refuses (it has no rule for the fused
    node) is read again with its model-local functions inlined, if it has any."""
    try:
        return core.read_model(str(path))
    except Exception as exc:
        refused = f"{path}: OpenVINO cannot read this model: {_last_line(exc)}"
    try:
        return core.read_model(inline_local_functions(path, refused))
    except RuntimeUserError:
        raise
    except Exception as exc:
        raise RuntimeUserError(
            f"{path}: OpenVINO cannot read this model even with its local functions inlined: {_last_line(exc)}"
        ) from None


def inline_local_functions(path: Path, refused: str) -> bytes:
    """The model's bytes with every call of a model-local function replaced by the function's body
    (``refused``: why OpenVINO could not read it as it is)."""
    try:
        import onnx
        import onnx.inliner
    except ImportError:
        raise RuntimeUserError(
            f"{refused}; a fused node's body is a local ONNX function, which OpenVINO reads once "
            f"inlined by the onnx package ({INSTALL_HINT})"
        ) from None
    try:
        proto = onnx.load(str(path))
    except Exception:
        raise RuntimeUserError(refused) from None
    if not proto.functions:
        raise RuntimeUserError(refused)
    return onnx.inliner.inline_local_functions(proto).SerializeToString()


def keep_float_ops_in_float(model) -> int:
    """Drop the quantize → dequantize roundings in front of ops the file keeps in float (the
    reductions, the map product and the fused node's body); return how many.

    ONNX Runtime computes such ops in float on the dequantized values. OpenVINO's low-precision
    passes instead move the dequantization past them and run a ReduceMean in INT8, rounding each
    mean to a whole step: on resnet18 that cost top-1 agreement 0.90 and map correlation 0.85
    (ONNX Runtime: 0.98, 0.999). Only pairs feeding quantized ops (convolutions, Add, MaxPool,
    and the ReLU between them) are kept.
    """
    dropped = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "FakeQuantize":
            continue
        dequantized = _dequantize_end(node)
        users = [target.get_node().get_type_name() for target in dequantized.output(0).get_target_inputs()]
        if dequantized is not node and users and not QUANTIZED_CONSUMERS.intersection(users):
            dequantized.output(0).replace(node.input_value(0))
            dropped += 1
    return dropped


def _dequantize_end(fake_quantize):
    """The last node of FakeQuantize → Convert → Convert → [Subtract] → Multiply, the form OpenVINO's
    ONNX reader gives a QuantizeLinear → DequantizeLinear pair (``fake_quantize`` if not that form)."""
    chain, node = [], _only_user(fake_quantize)
    while node is not None and node.get_type_name() in ("Convert", "Subtract"):
        chain.append(node.get_type_name())
        node = _only_user(node)
    if node is None or node.get_type_name() != "Multiply" or chain[:2] != ["Convert", "Convert"]:
        return fake_quantize
    return node


def _only_user(node):
    users = list(node.output(0).get_target_inputs())
    return users[0].get_node() if len(users) == 1 else None


def framework_metadata(model) -> dict[str, str]:
    """ONNX ``metadata_props``, which OpenVINO's reader keeps under rt_info["framework"]."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    return {key: value.astype(str) for key, value in info["framework"].items()}


def executed_precision(compiled) -> str:
    """What the compiled model's convolutions and matrix products compute in, from its execution
    graph: ``fp32``, ``bf16``, ``fp16``, ``int8`` (the rest in fp32) or e.g. ``int8+bf16``."""
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in MATMUL_LAYERS:
            counts[info["runtimePrecision"].astype(str)] += 1
    names = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
    floats = sorted({names.get(kind, kind) for kind in counts if kind not in INT8_TYPES})
    if any(kind in INT8_TYPES for kind in counts):
        return "+".join(["int8"] + [f for f in floats if f != "fp32"])
    return "+".join(floats) or "fp32"


def _last_line(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
