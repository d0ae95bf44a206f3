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
from .metadata import load_onnx, set_precision

FP32_OPS = {("", "Softmax"), ("", "ReduceMax"), ("", "ReduceMean"), ("", "ReduceSum"), (DOMAIN, OP_TYPE)}
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def convert_fp16(fp32_onnx: Path, out: Path) -> Path:
    model = load_onnx(fp32_onnx)
    precision = {p.key: p.value for p in model.metadata_props}.get("precision", "fp32")
    if precision != "fp32":
        raise UserError(f"{fp32_onnx}: FP16 conversion starts from the FP32 model, this one is {precision}")
    half = to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    atomic_write_bytes(out, half.SerializeToString())
    return Path(out)


def _runs_fp32(node: onnx.NodeProto) -> bool:
    return (node.domain, node.op_type) in FP32_OPS


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a float16 copy of ``model`` (graph I/O stay float32)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    float_names = _float_tensor_names(model)
    dtype: dict[str, int] = {}  # float tensor -> the type it has after conversion

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    for init in graph.initializer:
        if init.data_type != FLOAT:
            continue
        users = consumers.get(init.name, [])
        if users and not any(_runs_fp32(n) for n in users):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
            dtype[init.name] = HALF
        else:
            dtype[init.name] = FLOAT
    for value in graph.input:
        dtype[value.name] = FLOAT

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=casts[key]))
        return casts[key]

    for node in graph.node:
        want = FLOAT if _runs_fp32(node) else HALF
        _to_half_attributes(node, want)
        for i, name in enumerate(node.input):
            if name in dtype and dtype[name] != want:
                node.input[i] = cast(name, want)
        new_nodes.append(node)
        for name in node.output:
            if name in float_names:
                dtype[name] = want

    for value in graph.output:
        if dtype.get(value.name) == HALF:
            internal = f"{value.name}__fp16"
            for node in new_nodes:
                _rename(node, value.name, internal)
            new_nodes.append(helper.make_node("Cast", [internal], [value.name], to=FLOAT, name=f"{value.name}__out"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    set_precision(model, "fp16")
    return model


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
