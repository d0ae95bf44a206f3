"""TensorRT's Q/DQ placement rules and the layout checker, on hand-made graphs with known answers.

(The real model's two INT8 variants and their parity: tests/test_parity.py's export end to end.)
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.qdq_layout import (
    amax_from_qdq_model,
    amax_from_tensors_data,
    check_layout,
    place_trt_qdq,
)


def _residual_block() -> onnx.ModelProto:
    """x -> Conv1 -> Relu(r) -> Conv2(c2) -> Add(c2, r) -> Relu -> MaxPool -> y; 2 channels, 3x3 kernels."""
    w1 = np.zeros((2, 2, 1, 1), np.float32)
    w1[0, 0], w1[1, 1] = 2.54, -0.127  # channel amax 2.54 and 0.127: scales 0.02 and 0.001
    w2 = np.eye(2, dtype=np.float32).reshape(2, 2, 1, 1) * 0.5
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["t"], name="relu2"),
        helper.make_node("MaxPool", ["t"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.array([0.1, -0.1], np.float32), "b2"),
    ]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


AMAX = {"x": 1.27, "r": 2.54, "t": 3.0}


def _by_output(model):
    return {out: node for node in model.graph.node for out in node.output}


def _init(model, name):
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == name))


def test_placement_follows_tensorrt_rules():
    model = _residual_block()
    assert place_trt_qdq(model, AMAX) == []
    onnx.checker.check_model(model, full_check=True)
    nodes = {n.name: n for n in model.graph.node}
    producers = _by_output(model)
    # Conv inputs come from a DQ; scale = amax / 127, zero point int8 0
    for conv, tensor, scale in (("conv1", "x", 0.01), ("conv2", "r", 0.02)):
        dq = producers[nodes[conv].input[0]]
        assert dq.op_type == "DequantizeLinear" and producers[dq.input[0]].input[0] == tensor
        assert _init(model, dq.input[1]) == pytest.approx(scale)
        assert _init(model, dq.input[2]).dtype == np.int8 and _init(model, dq.input[2]) == 0
    # weights: int8 initializer, per output channel (axis 0)
    wdq = producers[nodes["conv1"].input[1]]
    assert wdq.attribute[0].name == "axis" and wdq.attribute[0].i == 0
    np.testing.assert_allclose(_init(model, wdq.input[1]), [0.02, 0.001], rtol=1e-6)
    q = _init(model, wdq.input[0])
    assert q.dtype == np.int8 and q[0, 0, 0, 0] == 127 and q[1, 1, 0, 0] == -127
    assert nodes["conv2"].input[2] == "b2"  # bias stays float
    # residual Add: the Conv side is left for TensorRT to fuse; the skip side shares conv2's DQ of r
    assert nodes["add"].input[0] == "c2" and nodes["add"].input[1] == nodes["conv2"].input[0]
    assert sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "r") == 1
    # MaxPool input quantized; the float weights are gone
    assert producers[nodes["pool"].input[0]].op_type == "DequantizeLinear"
    assert not {"w1", "w2"} & {i.name for i in model.graph.initializer}


def test_placed_model_runs_and_stays_close_to_float():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (1, 2, 4, 4)).astype(np.float32)  # inside every range: no clipping
    float_model = _residual_block()
    quantized = _residual_block()
    place_trt_qdq(quantized, AMAX)
    run = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for m in (float_model, quantized)
    ]
    assert np.abs(run[1] - run[0]).max() < 0.05  # a few steps of the 0.01–0.02 scales
    assert not np.array_equal(run[0], run[1])  # it did quantize


def test_checker_counts_the_tensorrt_layout():
    model = _residual_block()
    place_trt_qdq(model, AMAX)
    summary = check_layout(model)
    assert (summary.conv, summary.conv_int8_input, summary.conv_per_channel_weight) == (2, 2, 2)
    assert (summary.residual_add, summary.residual_add_both_int8) == (1, 1)
    assert (summary.add_inputs, summary.add_int8_inputs) == (2, 1)  # the other side is the fused Conv
    assert summary.duplicated_pairs == 0 and summary.nonzero_zero_points == 0
    assert summary.float_islands == [] and summary.trt_violations() == []
    assert "residual Adds int8 on both sides 1/1" in summary.line("m")


def test_missing_ranges_leave_float_islands_the_checker_names():
    model = _residual_block()
    assert place_trt_qdq(model, {"x": 1.27}) == ["r"]  # t is optional: a MaxPool
    summary = check_layout(model)
    assert summary.conv_int8_input == 1 and set(summary.float_islands) == {"conv2", "add", "pool"}
    assert "a Conv has a float input" in summary.trt_violations()
    assert "a residual Add is not int8 on both sides" in summary.trt_violations()


def _qdq(tensor, scale, zero, suffix, axis=None):
    kwargs = {} if axis is None else {"axis": axis}
    return [
        helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_q{suffix}"]),
        helper.make_node("DequantizeLinear", [f"{tensor}_q{suffix}", scale, zero], [f"{tensor}_dq{suffix}"], **kwargs),
    ]


def test_checker_flags_duplicated_pairs_zero_points_and_per_channel_activations():
    """An onnxruntime-CPU-style layout: one pair per consumer, a shifted zero point, per-channel activations."""
    inits = [
        numpy_helper.from_array(np.float32(0.1), "s"),
        numpy_helper.from_array(np.int8(0), "z"),
        numpy_helper.from_array(np.int8(3), "z3"),
        numpy_helper.from_array(np.full(2, 0.1, np.float32), "sc"),
        numpy_helper.from_array(np.zeros(2, np.int8), "zc"),
    ]
    nodes = (
        _qdq("a", "s", "z", 0)
        + _qdq("a", "s", "z3", 1)
        + _qdq("b", "sc", "zc", 0, axis=1)
        + [
            helper.make_node("Add", ["a_dq0", "a_dq1"], ["c"]),
            helper.make_node("Add", ["c", "b_dq0"], ["d"]),
            helper.make_node("Mul", ["b_dq0", "c"], ["e"]),
        ]
    )
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 2, 2]) for n in ("a", "b")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", vi, [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)], inits)
    )
    summary = check_layout(model)
    assert summary.duplicated_pairs == 1 and summary.nonzero_zero_points == 2  # the Q and DQ of z3
    assert summary.per_channel_activations == 1
    assert (summary.residual_add, summary.residual_add_both_int8) == (2, 1)  # c is neither DQ nor a Conv output
    assert len(summary.trt_violations()) == 4
    assert summary.other_int8_inputs == {"Mul": 1} and "also int8 inputs of Mul 1" in summary.line()


def test_range_tables_from_a_qdq_model_and_from_calibration_data():
    model = _residual_block()
    place_trt_qdq(model, AMAX)
    table = amax_from_qdq_model(model)
    assert set(table) == set(AMAX) and all(table[k] == pytest.approx(v, rel=1e-6) for k, v in AMAX.items())

    class Range:
        def __init__(self, lo, hi):
            self.range_value = (np.float32(lo), np.float32(hi))

    assert amax_from_tensors_data({"a": Range(-3.0, 1.0), "b": Range(0.0, 2.0)}) == {"a": 3.0, "b": 2.0}
