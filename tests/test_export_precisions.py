"""FP16 and INT8 variants: their structure, and parity with PyTorch on held-out images."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from export.fp16 import convert_fp16
from export.fused_op import DOMAIN, OP_TYPE
from export.int8 import quantize_int8
from export.onnx_export import export_onnx
from export.onnx_metadata import read_metadata
from export.parity import run_parity
from export.testing import make_trained_checkpoint, write_image_folder
from runtime.backends.onnxruntime_backend import session_options
from wscnet.errors import UserError


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("precisions")
    ckpt = make_trained_checkpoint(root / "ckpt.pt", size=64)
    calib = write_image_folder(root / "calib", num_classes=6, per_class=5, size=64, seed=11)
    held_out = write_image_folder(root / "held_out", num_classes=6, per_class=6, size=64, seed=12)
    fp32 = export_onnx(ckpt, root / "model.onnx", dynamic_batch=True)
    fp16 = convert_fp16(fp32, root / "model.fp16.onnx")
    int8 = quantize_int8(fp32, root / "model.int8.onnx", calib, n=30, method="entropy")
    return {"root": root, "ckpt": ckpt, "held_out": held_out, "calib": calib, "fp32": fp32, "fp16": fp16, "int8": int8}


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


def test_fp16_has_half_weights_float_io_and_fp32_fragile_parts(work):
    model = onnx.load(str(work["fp16"]))
    onnx.checker.check_model(model, full_check=True)
    assert read_metadata(model)["precision"] == "fp16"
    types = _types(model)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output])
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(types[w] == TensorProto.FLOAT16 for w in conv_weights)
    fragile = [n for n in model.graph.node if n.op_type in ("Softmax", "ReduceMean") or n.domain == DOMAIN]
    assert any(n.domain == DOMAIN and n.op_type == OP_TYPE for n in fragile)
    for node in fragile:
        assert types[node.input[0]] == TensorProto.FLOAT, node.name
    assert len(model.functions) == 1


def test_fp16_parity(work):
    report = run_parity(work["fp16"], work["ckpt"], work["held_out"], n=36, progress=False)
    assert report["precision"] == "fp16" and report["n_images"] == 36
    assert report["top1_agreement"] >= 0.99
    assert report["map_correlation"] >= 0.99
    assert report["passed"]


def test_int8_is_symmetric_per_channel_qdq_with_the_fused_node(work):
    model = onnx.load(str(work["int8"]))
    onnx.checker.check_model(model, full_check=True)
    assert read_metadata(model)["precision"] == "int8"
    assert [(f.domain, f.name) for f in model.functions] == [(DOMAIN, OP_TYPE)]
    assert any(n.op_type == OP_TYPE for n in model.graph.node)
    inits = {i.name: i for i in model.graph.initializer}
    qnodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qnodes) > 40
    for node in qnodes:
        if len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]])
            assert not zp.any(), f"{node.name}: zero point must be 0 (symmetric)"
            assert inits[node.input[2]].data_type in (TensorProto.INT8, TensorProto.INT32)
    # conv weights: int8 initialisers dequantized per output channel
    conv_weight_dq = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and len(inits[n.input[0]].dims) == 4
    ]
    assert conv_weight_dq
    for node in conv_weight_dq:
        assert inits[node.input[0]].data_type == TensorProto.INT8
        assert numpy_helper.to_array(inits[node.input[1]]).size == inits[node.input[0]].dims[0]


def test_int8_runs_as_integer_kernels_in_onnx_runtime(work, tmp_path):
    options = session_options()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(work["int8"]), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(options.optimized_model_filepath).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("QLinearConv") == 20  # every backbone convolution of resnet18
    # only the detector (its output F' feeds the float fused node) stays a float convolution
    assert [n.name for n in nodes if n.op_type == "Conv"] == ["/model/detector/Conv"]


def test_int8_parity(work):
    report = run_parity(work["int8"], work["ckpt"], work["held_out"], n=36, progress=False)
    assert report["top1_agreement"] >= 0.97
    assert report["map_correlation"] >= 0.95
    assert report["passed"]


@pytest.mark.parametrize("method", ["max", "percentile"])
def test_int8_other_calibration_methods(work, tmp_path, method):
    path = quantize_int8(work["fp32"], tmp_path / "m.onnx", work["calib"], n=8, method=method)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(["probs"], {"image": np.zeros((2, 3, 64, 64), np.float32)})[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_bad_calibration_inputs(work, tmp_path):
    with pytest.raises(UserError, match="no image files"):
        quantize_int8(work["fp32"], tmp_path / "m.onnx", tmp_path, n=4)
    with pytest.raises(UserError, match="calib-method"):
        quantize_int8(work["fp32"], tmp_path / "m.onnx", work["calib"], method="kl")
    with pytest.raises(UserError, match="starts from the FP32"):
        quantize_int8(work["fp16"], tmp_path / "m.onnx", work["calib"], n=4)
    assert not (tmp_path / "m.onnx").exists()


def test_tensorrt_layout_int8_follows_the_rules_and_passes_parity(work, tmp_path):
    """The engine variant, from the same calibrated ranges: TensorRT's placement, parity on held-out images."""
    from export.exporter import write_trt_int8
    from export.qdq_layout import check_layout

    lines: list[str] = []
    trt = write_trt_int8(work["fp32"], work["int8"], tmp_path / "model.int8-trt.onnx", echo=lines.append)
    model = onnx.load(str(trt))
    assert read_metadata(model)["precision"] == "int8" and read_metadata(model)["int8_layout"] == "tensorrt"
    summary = check_layout(model)
    assert summary.trt_violations() == [] and summary.residual_add == summary.residual_add_both_int8 == 8
    assert check_layout(onnx.load(str(work["int8"]))).duplicated_pairs > 0  # the ONNX Runtime layout keeps its own
    assert len(lines) == 2 and lines[1].startswith("model.int8-trt.onnx: Q/DQ layout")
    report = run_parity(trt, work["ckpt"], work["held_out"], n=36, progress=False)
    assert report["passed"] and report["top1_agreement"] >= 0.97
