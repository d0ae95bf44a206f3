"""INT8 float layouts: which convs stay in float is found from the graph's pattern, and the
quantized MobileNetV3 really keeps exactly those in float."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.int8 import FLOAT_LAYOUTS, QUANTIZED_OPS, float_layout, float_nodes, quantize_int8
from export.onnx_export import export_onnx
from export.onnx_metadata import read_metadata
from export.testing import make_trained_checkpoint, write_image_folder
from wscnet.errors import UserError


def conv(name: str, x: str, y: str, channels: int = 4) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    weight = numpy_helper.from_array(np.ones((channels, channels, 1, 1), np.float32), f"{name}_w")
    return helper.make_node("Conv", [x, weight.name], [y], name=name), weight


def se_graph() -> onnx.ModelProto:
    """stem -> HardSwish -> dw -> (GAP -> fc1 -> Relu -> fc2 -> HardSigmoid) * -> project."""
    parts = [
        conv("stem", "x", "a"),
        (helper.make_node("HardSwish", ["a"], ["b"], name="hs"), None),
        conv("dw", "b", "c"),
        (helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"), None),
        conv("fc1", "g", "h"),
        (helper.make_node("Relu", ["h"], ["i"], name="relu"), None),
        conv("fc2", "i", "j"),
        (helper.make_node("HardSigmoid", ["j"], ["k"], name="hsig"), None),
        (helper.make_node("Mul", ["c", "k"], ["m"], name="scale"), None),
        conv("project", "m", "y"),
    ]
    nodes = [p[0] for p in parts]
    weights = [p[1] for p in parts if p[1] is not None]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
    return helper.make_model(helper.make_graph(nodes, "se", io[:1], io[1:], weights))


def test_layouts_pick_their_convs_by_pattern():
    graph = se_graph()
    assert float_nodes(graph, "none") == []
    assert float_nodes(graph, "squeeze_excitation") == ["fc1", "fc2"]
    assert float_nodes(graph, "hardswish") == ["dw", "stem"]
    assert float_nodes(graph, "squeeze_excitation+hardswish") == ["dw", "fc1", "fc2", "stem"]
    with pytest.raises(UserError, match="float layout"):
        float_nodes(graph, "everything")
    assert all(float_layout(arch) in FLOAT_LAYOUTS for arch in ("resnet18", "mobilenet_v3_small"))


def float_weight_convs(model: onnx.ModelProto) -> set[str]:
    """Convs whose weight is a plain float initializer rather than a DequantizeLinear output."""
    initializers = {init.name for init in model.graph.initializer}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in initializers}


def test_quantized_mobilenet_keeps_the_layout_in_float(tmp_path):
    ckpt = make_trained_checkpoint(tmp_path / "m.pt", arch="mobilenet_v3_small", num_classes=3, size=64, steps=2)
    fp32 = export_onnx(ckpt, tmp_path / "m.onnx")
    calib = write_image_folder(tmp_path / "calib", num_classes=3, per_class=2, size=64)
    expected = set(float_nodes(onnx.load(str(fp32)), "squeeze_excitation"))
    assert len(expected) == 2 * 9  # MobileNetV3-small has nine squeeze-excitation blocks
    out = quantize_int8(fp32, tmp_path / "se.onnx", calib, n=4, keep_float="squeeze_excitation")
    assert float_weight_convs(onnx.load(str(out))) == expected
    plain = quantize_int8(fp32, tmp_path / "none.onnx", calib, n=4, keep_float="none")
    assert float_weight_convs(onnx.load(str(plain))) == set()


@pytest.fixture(scope="module")
def small_mobilenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    ckpt = make_trained_checkpoint(root / "m.pt", arch="mobilenet_v3_small", num_classes=3, size=64, steps=2)
    return export_onnx(ckpt, root / "m.onnx"), write_image_folder(root / "calib", num_classes=3, per_class=2, size=64)


def test_block_layouts_keep_every_quantizable_node_of_the_named_blocks(small_mobilenet):
    model = onnx.load(str(small_mobilenet[0]))
    in_block = sorted(n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and "/backbone.3/" in n.name)
    assert len(in_block) >= 4 and float_nodes(model, "backbone.3") == in_block
    hardswish = set(float_nodes(model, "hardswish"))
    assert set(float_nodes(model, "hardswish+backbone.3")) == hardswish | set(in_block)
    with pytest.raises(UserError, match="'backbone.99' is neither"):
        float_nodes(model, "hardswish+backbone.99")


def test_int8_file_records_its_float_layout_and_calibration(small_mobilenet, tmp_path):
    fp32, calib = small_mobilenet
    out = quantize_int8(fp32, tmp_path / "m.int8.onnx", calib, n=4, method="max", keep_float="hardswish+detector")
    model = onnx.load(str(out))
    assert read_metadata(model)["int8_float_layout"] == "hardswish+detector"
    assert read_metadata(model)["int8_calibration"] == "max, 4 images"
    detector = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/model/detector/")]
    assert detector and {n.name for n in detector} <= float_weight_convs(model)
