"""INT8 Q/DQ placed by TensorRT's rules (the engine variant), and a layout checker for any Q/DQ model.

Two INT8 files come out of one calibration: ``model.int8.onnx`` (onnxruntime's quantizer, with a
Q/DQ pair per consumer so that ONNX Runtime's CPU kernels run uint8×int8) and
``model.int8-trt.onnx`` (this module), which follows TensorRT's Q/DQ placement recommendations
for explicit quantization:

- every Conv's activation input is quantized per tensor and its weights per output channel
  (int8 initializer + DequantizeLinear on axis 0); biases stay float; zero points are 0;
- Conv outputs are not quantized: TensorRT fuses a Conv with the Add (and ReLU) after it;
- the other inputs of a residual Add (the skip connection) are quantized, so that the fused
  Conv+Add reads and writes INT8 and both sides of the Add are INT8;
- MaxPool inputs are quantized where a range exists; otherwise the Q/DQ on its output is enough
  (TensorRT propagates a Q backwards through MaxPool, which commutes with quantization);
- one Q/DQ pair per tensor, shared by its quantized consumers (extra pairs split fusions);
- the fused CrossSpatialPoolMap node, the softmaxes and the head stay float.

The scales come from a range table ``{tensor name: amax}`` (symmetric: scale = amax / 127), so the
placement composes with any calibration: ``amax_from_qdq_model`` reads it from a calibrated Q/DQ
model (the onnxruntime variant), ``amax_from_tensors_data`` from onnxruntime's ``TensorsData``.
"""

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .fused_op import DOMAIN, OP_TYPE
from .onnx_metadata import read_metadata, set_precision, write_metadata

INT8_MAX = 127
LAYOUT_KEY = "int8_layout"  # metadata: "onnxruntime" | "tensorrt"


def amax_from_qdq_model(model: onnx.ModelProto) -> dict[str, float]:
    """{activation tensor: amax} from the QuantizeLinear nodes of a symmetric int8 Q/DQ model."""
    inits = {i.name: i for i in model.graph.initializer}
    table: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits or node.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]])
        if scale.size == 1:
            table[node.input[0]] = max(table.get(node.input[0], 0.0), float(scale.reshape(())) * INT8_MAX)
    return table


def amax_from_tensors_data(data) -> dict[str, float]:
    """{tensor: amax} from onnxruntime's calibration ``TensorsData`` (``range_value`` = (lo, hi))."""
    return {
        name: float(max(abs(float(np.min(v.range_value[0]))), abs(float(np.max(v.range_value[1])))))
        for name, v in data.items()
    }


class _Placer:
    """Adds the Q/DQ nodes and int8 weights to one model, in place."""

    def __init__(self, model: onnx.ModelProto, amax: dict[str, float]) -> None:
        self.model, self.amax = model, amax
        self.inits = {i.name: i for i in model.graph.initializer}
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.dequantized: dict[str, str] = {}  # float tensor -> its DQ output
        self.after: dict[str, list[onnx.NodeProto]] = {}  # producer output -> nodes to insert after it
        self.missing: list[str] = []

    def activation(self, name: str, required: bool = True) -> str | None:
        """The DQ output standing for ``name`` (one Q/DQ pair per tensor); None without a range."""
        if name in self.dequantized:
            return self.dequantized[name]
        if name not in self.amax:
            if required:
                self.missing.append(name)
            return None
        scale = max(self.amax[name], 1e-8) / INT8_MAX
        s, z = self._const(f"{name}__trt_scale", np.float32(scale)), self._const(f"{name}__trt_zero", np.int8(0))
        q = helper.make_node("QuantizeLinear", [name, s, z], [f"{name}__trt_q"], name=f"{name}__trt_Q")
        dq = helper.make_node("DequantizeLinear", [q.output[0], s, z], [f"{name}__trt_dq"], name=f"{name}__trt_DQ")
        self.after.setdefault(name, []).extend([q, dq])
        self.dequantized[name] = dq.output[0]
        return dq.output[0]

    def weight(self, name: str) -> str:
        """int8 per-output-channel copy of a float weight initializer, behind a DequantizeLinear."""
        if name in self.dequantized:
            return self.dequantized[name]
        w = numpy_helper.to_array(self.inits[name]).astype(np.float32)
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale = (np.maximum(amax, 1e-12) / INT8_MAX).astype(np.float32)
        q = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -INT8_MAX, INT8_MAX).astype(np.int8)
        qname = self._const(f"{name}__trt_int8", q)
        s = self._const(f"{name}__trt_scale", scale)
        z = self._const(f"{name}__trt_zero", np.zeros(w.shape[0], np.int8))
        dq = helper.make_node("DequantizeLinear", [qname, s, z], [f"{name}__trt_dq"], name=f"{name}__trt_DQ", axis=0)
        self.after.setdefault("", []).append(dq)
        self.dequantized[name] = dq.output[0]
        return dq.output[0]

    def _const(self, name: str, value: np.ndarray) -> str:
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def rewire(self, node: onnx.NodeProto, index: int, new: str | None) -> None:
        if new is not None:
            node.input[index] = new

    def commit(self) -> None:
        """Insert the new nodes right after their producers (topological order kept)."""
        ordered = list(self.after.get("", []))
        graph_inputs = {i.name for i in self.model.graph.input}
        for name in graph_inputs:
            ordered += self.after.get(name, [])
        for node in self.model.graph.node:
            ordered.append(node)
            for out in node.output:
                ordered += self.after.get(out, [])
        del self.model.graph.node[:]
        self.model.graph.node.extend(ordered)
        replaced = {name for name in self.dequantized if name in self.inits}
        used = {name for node in ordered for name in node.input}
        kept = [i for i in self.model.graph.initializer if i.name not in replaced or i.name in used]
        del self.model.graph.initializer[:]
        self.model.graph.initializer.extend(kept)


def place_trt_qdq(model: onnx.ModelProto, amax: dict[str, float]) -> list[str]:
    """Quantize ``model`` (float, in place) by TensorRT's rules; returns tensors left float for want of a range."""
    placer = _Placer(model, amax)
    for node in list(model.graph.node):
        if node.op_type == "Conv":
            placer.rewire(node, 0, placer.activation(node.input[0]))
            if node.input[1] in placer.inits:
                node.input[1] = placer.weight(node.input[1])
        elif node.op_type == "MaxPool":  # without a range, TensorRT moves the Q after it in front of it
            placer.rewire(node, 0, placer.activation(node.input[0], required=False))
        elif node.op_type == "Add" and _is_residual(node, placer.inits):
            fused = _fusable_input(node, placer.producers)
            for i, name in enumerate(node.input):
                if i != fused:
                    placer.rewire(node, i, placer.activation(name))
    placer.commit()
    return sorted(set(placer.missing))


def _is_residual(node: onnx.NodeProto, inits: dict) -> bool:
    return len(node.input) == 2 and not any(name in inits for name in node.input)


def _fusable_input(node: onnx.NodeProto, producers: dict) -> int | None:
    """Index of the Add input TensorRT fuses into its producing Conv (the first Conv output)."""
    for i, name in enumerate(node.input):
        producer = producers.get(name)
        if producer is not None and producer.op_type == "Conv":
            return i
    return None


def write_trt_layout(fp32: onnx.ModelProto, amax: dict[str, float]) -> tuple[onnx.ModelProto, list[str]]:
    """A TensorRT-layout INT8 copy of the FP32 model (metadata precision int8, layout tensorrt)."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    missing = place_trt_qdq(model, amax)
    set_precision(model, "int8")
    metadata = read_metadata(model)
    metadata[LAYOUT_KEY] = "tensorrt"
    write_metadata(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model, missing


@dataclass
class LayoutSummary:
    conv: int = 0
    conv_int8_input: int = 0
    conv_per_channel_weight: int = 0
    add: int = 0
    add_int8_inputs: int = 0  # Add inputs behind a DequantizeLinear
    add_inputs: int = 0
    residual_add: int = 0
    residual_add_both_int8: int = 0  # each side a DQ output, or (one side) a Conv fused with the Add
    concat: int = 0
    concat_int8_inputs: int = 0
    concat_inputs: int = 0
    duplicated_pairs: int = 0  # tensors quantized by more than one QuantizeLinear
    nonzero_zero_points: int = 0
    per_channel_activations: int = 0
    fused_node_float: bool = True
    float_islands: list[str] = field(default_factory=list)  # Conv / MaxPool / residual Add left float
    other_int8_inputs: dict[str, int] = field(default_factory=dict)  # e.g. the head's Mul / ReduceMean

    def line(self, name: str = "") -> str:
        head = f"{name}: " if name else ""
        islands = ", ".join(self.float_islands[:4]) + (" …" if len(self.float_islands) > 4 else "")
        return (
            f"{head}Q/DQ layout: Conv int8 input {self.conv_int8_input}/{self.conv}, per-channel weights "
            f"{self.conv_per_channel_weight}/{self.conv}; Add int8 inputs {self.add_int8_inputs}/{self.add_inputs}, "
            f"residual Adds int8 on both sides {self.residual_add_both_int8}/{self.residual_add}; Concat int8 inputs "
            f"{self.concat_int8_inputs}/{self.concat_inputs}; duplicated pairs {self.duplicated_pairs}; "
            f"non-zero zero points {self.nonzero_zero_points}; fused node input {'float' if self.fused_node_float else 'int8-rounded'}; "
            f"float islands {len(self.float_islands)}{' (' + islands + ')' if islands else ''}" + self._others()
        )

    def _others(self) -> str:
        others = ", ".join(f"{op} {n}" for op, n in sorted(self.other_int8_inputs.items()))
        return f"; also int8 inputs of {others}" if others else ""

    def trt_violations(self) -> list[str]:
        """TensorRT's placement rules this layout breaks (empty: none)."""
        rules = [
            (self.conv_int8_input < self.conv, "a Conv has a float input"),
            (self.conv_per_channel_weight < self.conv, "a Conv's weights are not int8 per channel"),
            (self.residual_add_both_int8 < self.residual_add, "a residual Add is not int8 on both sides"),
            (self.duplicated_pairs > 0, "a tensor has more than one Q/DQ pair"),
            (self.nonzero_zero_points > 0, "a zero point is not 0"),
            (self.per_channel_activations > 0, "an activation is quantized per channel"),
            (not self.fused_node_float, "the fused node's input is quantized"),
        ]
        return [why for broken, why in rules if broken]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_layout(model: onnx.ModelProto) -> LayoutSummary:
    """Count where a Q/DQ model is quantized (works on either INT8 layout)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    summary = LayoutSummary()

    def dq(name: str) -> onnx.NodeProto | None:
        node = producers.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    _count_quantize_nodes(graph.node, inits, summary)
    for node in graph.node:
        if node.op_type == "Conv":
            _count_conv(node, dq, inits, summary)
        elif node.op_type in ("Add", "Concat"):
            _count_add_concat(node, dq, inits, producers, summary)
        elif node.op_type == "MaxPool" and dq(node.input[0]) is None and not _all_dequantized(node.output[0], graph):
            summary.float_islands.append(node.name or node.output[0])
        elif node.domain == DOMAIN and node.op_type == OP_TYPE:
            summary.fused_node_float = dq(node.input[0]) is None
        elif node.op_type not in ("QuantizeLinear", "DequantizeLinear", "MaxPool"):
            count = sum(1 for name in node.input if dq(name) is not None)
            if count:
                summary.other_int8_inputs[node.op_type] = summary.other_int8_inputs.get(node.op_type, 0) + count
    return summary


def _count_quantize_nodes(nodes, inits: dict, summary: LayoutSummary) -> None:
    seen: dict[str, int] = {}
    for node in nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) > 2 and node.input[2] in inits:
            summary.nonzero_zero_points += int(np.any(numpy_helper.to_array(inits[node.input[2]]) != 0))
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            seen[node.input[0]] = seen.get(node.input[0], 0) + 1
            scale = inits.get(node.input[1])
            summary.per_channel_activations += int(scale is not None and numpy_helper.to_array(scale).size > 1)
    summary.duplicated_pairs = sum(1 for count in seen.values() if count > 1)


def _count_conv(node, dq, inits: dict, summary: LayoutSummary) -> None:
    summary.conv += 1
    if dq(node.input[0]) is not None:
        summary.conv_int8_input += 1
    else:
        summary.float_islands.append(node.name or node.output[0])
    weight = dq(node.input[1])
    if weight is not None and weight.input[1] in inits and numpy_helper.to_array(inits[weight.input[1]]).size > 1:
        summary.conv_per_channel_weight += 1


def _count_add_concat(node, dq, inits: dict, producers: dict, summary: LayoutSummary) -> None:
    activations = [name for name in node.input if name and name not in inits]
    quantized = [name for name in activations if dq(name) is not None]
    if node.op_type == "Concat":
        summary.concat += 1
        summary.concat_inputs += len(activations)
        summary.concat_int8_inputs += len(quantized)
        return
    summary.add += 1
    summary.add_inputs += len(activations)
    summary.add_int8_inputs += len(quantized)
    if len(activations) != 2:
        return
    summary.residual_add += 1
    fused = [name for name in activations if dq(name) is None and _int8_conv(producers.get(name), dq)]
    if len(quantized) == 2 or (len(quantized) == 1 and len(fused) == 1):
        summary.residual_add_both_int8 += 1
    else:
        summary.float_islands.append(node.name or node.output[0])


def _all_dequantized(name: str, graph) -> bool:
    """Every consumer of ``name`` is a QuantizeLinear (the Q TensorRT can move in front of a MaxPool)."""
    users = [n for n in graph.node if name in n.input]
    return bool(users) and all(n.op_type == "QuantizeLinear" for n in users)


def _int8_conv(node, dq) -> bool:
    return node is not None and node.op_type == "Conv" and dq(node.input[0]) is not None
