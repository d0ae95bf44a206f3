"""FP32 ONNX -> FP16 ONNX: float16 weights and compute, float32 inputs and outputs.

The numerically fragile parts stay in float32: the softmaxes, the reductions (the pooled scores
v of Eq. (1), the GAP of Eq. (4)) and the fused CrossSpatialPoolMap node, whose function body
then runs in float32 as written. Cast nodes are put wherever a tensor crosses between the two.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wscnet.atomic import atomic_write_bytes
from wscnet.errors import UserError

from .fused_op import DOMAIN, OP_TYPE
from .onnx_metadata import load_onnx, set_precision

FP32_OPS = {("", "Softmax"), ("", "ReduceMax"), ("", "ReduceMean"), ("", "ReduceSum"), (DOMAIN, OP_TYPE)}
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def convert_fp16(fp32_onnx: Path, out: Path) -> Path:
    model = load_onnx(fp32_onnx)
    precision = {p.key: p.value for p in model.metadata_props}.get("precision", "fp32")
    if precision != "fp32":
        raise UserError(f"{fp32_onnx}: FP16 conversion starts from the FP32 model, this one is {precision}")
    check_fp16_memory(model, Path(fp32_onnx).name)
    half = to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    atomic_write_bytes(out, half.SerializeToString())
    return Path(out)


# Copies of the weights alive at once while converting: the loaded model, its serialized copy
# and the working copy, the shape-inferred one, and the checker's and the writer's serializations.
FP16_MODEL_COPIES = 5


def check_fp16_memory(model: onnx.ModelProto, name: str) -> None:
    from wscnet.memory import require

    weights = sum(init.ByteSize() for init in model.graph.initializer)
    require(
        f"FP16 conversion of {name}",
        FP16_MODEL_COPIES * weights,
        "convert on a larger machine and copy the .onnx file over",
    )


def _runs_fp32(node: onnx.NodeProto) -> bool:
    return (node.domain, node.op_type) in FP32_OPS


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float16 copy of ``model`` (graph I/O stay float32)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    float_names = _float_tensor_names(model)
    dtype = _half_initializers(graph)  # float tensor -> the type it has after conversion
    dtype.update({value.name: FLOAT for value in graph.input})
    nodes = _CastingNodes()
    for node in graph.node:
        want = FLOAT if _runs_fp32(node) else HALF
        _to_half_attributes(node, want)
        for i, name in enumerate(node.input):
            if name in dtype and dtype[name] != want:
                node.input[i] = nodes.cast(name, want)
        nodes.append(node)
        dtype.update({name: want for name in node.output if name in float_names})
    for value in graph.output:
        if dtype.get(value.name) == HALF:
            nodes.cast_output_back(value.name)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    set_precision(model, "fp16")
    return model


def _half_initializers(graph: onnx.GraphProto) -> dict[str, int]:
    """Float initializers become float16 unless a consumer runs in fp32; their types after that."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dtype: dict[str, int] = {}
    for init in graph.initializer:
        if init.data_type != FLOAT:
            continue
        users = consumers.get(init.name, [])
        if users and not any(_runs_fp32(n) for n in users):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
            dtype[init.name] = HALF
        else:
            dtype[init.name] = FLOAT
    return dtype


class _CastingNodes(list):
    """The converted graph's nodes, with one Cast per (tensor, type) inserted where needed."""

    def __init__(self) -> None:
        super().__init__()
        self.casts: dict[tuple[str, int], str] = {}

    def cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            self.casts[key] = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            self.append(helper.make_node("Cast", [name], [self.casts[key]], to=to, name=self.casts[key]))
        return self.casts[key]

    def cast_output_back(self, output: str) -> None:
        """A float16 graph output: computed under another name, then cast to float32 under its own."""
        internal = f"{output}__fp16"
        for node in self:
            _rename(node, output, internal)
        self.append(helper.make_node("Cast", [internal], [output], to=FLOAT, name=f"{output}__out"))


def _float_tensor_names(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    return {v.name for v in values if v.type.tensor_type.elem_type == FLOAT}


def _to_half_attributes(node: onnx.NodeProto, want: int) -> None:
    """Constant values and Cast targets follow the node's precision."""
    if want != HALF:
        return
    for attr in node.attribute:
        if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
            attr.i = HALF


def _rename(node: onnx.NodeProto, old: str, new: str) -> None:
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new
    for i, name in enumerate(node.output):
        if name == old:
            node.output[i] = new
