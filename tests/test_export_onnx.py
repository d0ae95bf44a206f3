"""FP32 export: the fused node and its function, metadata, and agreement with PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from export.fused_op import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, make_function
from export.images import find_images, load_batch
from export.onnx_export import OPSET, export_onnx
from export.onnx_metadata import METADATA_KEYS, read_metadata
from export.testing import make_trained_checkpoint, write_image_folder
from runtime.contract import InputContract
from wscnet.checkpoint import load_checkpoint
from wscnet.errors import UserError
from wscnet.model import deploy_outputs
from wscnet.pool_map import cross_spatial_pool_map


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_onnx")
    ckpt = make_trained_checkpoint(root / "ckpt.pt", size=64)
    images = write_image_folder(root / "images", num_classes=6, per_class=2, size=64, seed=7)
    fused = export_onnx(ckpt, root / "fused.onnx", dynamic_batch=True)
    plain = export_onnx(ckpt, root / "plain.onnx", dynamic_batch=True, fused_op=False)
    return {"root": root, "ckpt": ckpt, "images": images, "fused": fused, "plain": plain}


def _session(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _reference(ckpt_path, x: np.ndarray) -> list[np.ndarray]:
    model, _ = load_checkpoint(ckpt_path)
    with torch.inference_mode():
        return [t.numpy() for t in deploy_outputs(model(torch.from_numpy(x)))]


def test_fused_node_and_function_are_in_the_graph(work):
    model = onnx.load(str(work["fused"]))
    onnx.checker.check_model(model, full_check=True)
    fused = [n for n in model.graph.node if n.domain == DOMAIN]
    assert [n.op_type for n in fused] == [OP_TYPE]
    attrs = {a.name: helper.get_attribute_value(a) for a in fused[0].attribute}
    assert attrs == {"k": 4, "pool": b"max", "map_weight": b"softmax", "plugin_namespace": PLUGIN_NAMESPACE.encode()}
    assert [(f.domain, f.name) for f in model.functions] == [(DOMAIN, OP_TYPE)]
    assert {o.domain for o in model.opset_import} >= {"", DOMAIN}
    # the plain export has no trace of it, but the same computation in standard ops
    plain = onnx.load(str(work["plain"]))
    assert not plain.functions and all(n.domain == "" for n in plain.graph.node)
    assert {"ReduceMax", "Softmax", "ReduceSum"} <= {n.op_type for n in plain.graph.node}


def test_io_names_shapes_and_metadata(work):
    model = onnx.load(str(work["fused"]))
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probs", "det_scores", "sentiment_map"]
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(model.graph.input[0]) == ["batch", 3, 64, 64]
    assert [dims(o) for o in model.graph.output] == [["batch", 6], ["batch", 6], ["batch", 1, 2, 2]]
    meta = read_metadata(model)
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["precision"] == "fp32" and meta["fused_op"] == "1" and meta["arch"] == "resnet18"
    assert meta["input_size"] == "64" and meta["k"] == "4"
    assert read_metadata(onnx.load(str(work["plain"])))["fused_op"] == "0"


def test_removing_the_function_makes_onnx_runtime_refuse_the_model(work):
    model = onnx.load(str(work["fused"]))
    _session(model)  # loads with the function
    del model.functions[:]
    with pytest.raises(Exception, match=OP_TYPE):
        _session(model)


def test_fused_and_plain_graphs_agree_with_pytorch_and_each_other(work):
    x = load_batch(find_images(work["images"]), InputContract(64))
    ref = _reference(work["ckpt"], x)
    fused = _session(work["fused"]).run(None, {"image": x})
    plain = _session(work["plain"]).run(None, {"image": x})
    for r, f, p in zip(ref, fused, plain):
        assert f.shape == r.shape
        np.testing.assert_allclose(f, r, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(p, r, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(f, p, atol=1e-4, rtol=1e-4)
    assert (fused[0].argmax(1) == ref[0].argmax(1)).all()
    assert ref[2].std() > 0  # the maps have structure, so the comparison means something


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("map_weight", ["softmax", "raw"])
def test_function_body_matches_the_pytorch_op(pool, map_weight):
    k, c = 3, 5
    node = helper.make_node(
        OP_TYPE,
        ["F"],
        ["v", "M"],
        domain=DOMAIN,
        k=k,
        pool=pool,
        map_weight=map_weight,
        plugin_namespace=PLUGIN_NAMESPACE,
    )
    graph = helper.make_graph(
        [node],
        "pool_map",
        [helper.make_tensor_value_info("F", TensorProto.FLOAT, ["N", k * c, "h", "w"])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", c]),
            helper.make_tensor_value_info("M", TensorProto.FLOAT, ["N", "h", "w"]),
        ],
    )
    model = helper.make_model(
        graph,
        functions=[make_function(pool, map_weight, OPSET)],
        ir_version=10,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
    )
    onnx.checker.check_model(model, full_check=True)
    fprime = torch.randn(2, k * c, 3, 4) * 4
    v, m = _session(model).run(None, {"F": fprime.numpy()})
    rv, rm = cross_spatial_pool_map(fprime, k, pool, map_weight)
    np.testing.assert_allclose(v, rv.numpy(), atol=1e-5)
    np.testing.assert_allclose(m, rm.numpy(), atol=1e-5)


def test_static_batch_and_image_size(work, tmp_path):
    path = export_onnx(work["ckpt"], tmp_path / "b2.onnx", batch=2, img_size=96)
    session = _session(path)
    assert session.get_inputs()[0].shape == [2, 3, 96, 96]
    outs = session.run(None, {"image": np.zeros((2, 3, 96, 96), np.float32)})
    assert outs[2].shape == (2, 1, 3, 3)
    assert read_metadata(onnx.load(str(path)))["input_size"] == "96"


def test_bad_inputs_are_one_line_errors_and_leave_files_alone(work, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    with pytest.raises(UserError, match="multiple of 32"):
        export_onnx(work["ckpt"], target, img_size=50)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        export_onnx(junk, target)
    assert target.read_bytes() == b"keep me"
