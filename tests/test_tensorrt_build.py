"""TensorRT builder and plugin: every part that needs no GPU (the GPU kernel test is test_plugin_gpu.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from onnx import TensorProto, helper

from export import tensorrt_build as tb
from export import trt_plugin
from export.onnx_metadata import metadata_from_checkpoint
from runtime.backends.tensorrt_backend import check_compatibility, read_sidecar
from runtime.errors import RuntimeUserError
from wscnet.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CKPT = {
    "model_config": {
        "arch": "resnet18",
        "k": 4,
        "head": "wscnet",
        "pool": "max",
        "map_weight": "softmax",
        "coupling": "both",
    },
    "class_names": ["a", "b", "c"],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "input_size": 64,
}


def _model_with_batch(dim) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [dim, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim, 3, 64, 64])
    return helper.make_model(helper.make_graph([helper.make_node("Identity", ["image"], ["y"])], "g", [x], [y]))


def test_missing_tensorrt_is_a_user_error():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(UserError, match="TensorRT is not installed"):
        tb.import_tensorrt()
    with pytest.raises(UserError, match="TensorRT is not installed"):
        tb.build_engine(Path("model.onnx"), Path("model.engine"))


@pytest.mark.parametrize(
    "version, precision, strong",
    [
        ("10.3.0", "fp32", False),
        ("10.3.0", "fp16", True),
        ("10.13.2.6", "int8", True),
        ("11.0.0", "fp32", True),
        ("11.3.0.1", "fp16", True),
    ],
)
def test_strong_typing_per_version(version, precision, strong, monkeypatch):
    assert tb.use_strong_typing(version, precision) is strong
    fake = SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=5))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)  # TensorRT cannot be installed here
    on_10 = version.startswith("10.")  # 11.x: always strongly typed, the flag deprecated and not passed
    assert tb.network_flags(precision) == (1 << 5 if strong and on_10 else 0)


def test_old_tensorrt_is_refused():
    with pytest.raises(UserError, match="TensorRT 10 or newer"):
        tb.use_strong_typing("8.6.1", "fp32")


def test_batch_range_only_for_dynamic_inputs():
    assert tb.batch_range(_model_with_batch(4), 1, 4, 16) is None
    assert tb.batch_range(_model_with_batch("batch"), 1, 4, 16) == (1, 4, 16)
    with pytest.raises(UserError, match="min <= opt <= max"):
        tb.batch_range(_model_with_batch("batch"), 1, 8, 4)


def test_sidecar_round_trips_through_the_runtime_and_mismatches_are_one_line(tmp_path):
    meta = metadata_from_checkpoint(CKPT, img_size=64, fused_op=True)
    data = tb.sidecar_data(
        meta,
        tensorrt_version="10.13.2.6",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
        built_from=Path("model.int8.onnx"),
        input_size=64,
        batch=(1, 4, 16),
        plugins=[trt_plugin.PLUGIN_NAME],
        precision="int8",
    )
    assert data["io"]["inputs"]["image"]["shape"] == [-1, 3, 64, 64]
    assert data["io"]["batch"] == {"min": 1, "opt": 4, "max": 16}
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"\0")
    (tmp_path / "model.int8.engine.json").write_text(json.dumps(data))
    sidecar = read_sidecar(engine)
    assert sidecar.metadata.class_names == ("a", "b", "c")
    assert sidecar.metadata.input_size == 64 and sidecar.metadata.precision == "int8"
    check_compatibility(engine, sidecar, "10.13.2", "NVIDIA H200")  # same release and GPU: fine
    with pytest.raises(RuntimeUserError, match="TensorRT 10.13.2.6") as version:
        check_compatibility(engine, sidecar, "11.0.0", "NVIDIA H200")
    with pytest.raises(RuntimeUserError, match="H200") as gpu:
        check_compatibility(engine, sidecar, "10.13.2.6", "NVIDIA A100-SXM4-80GB")
    for error in (version, gpu):
        assert "\n" not in str(error.value)


def test_plugin_shape_and_type_logic():
    assert trt_plugin.output_dims((2, 32, 7, 9), 4) == ((2, 8), (2, 7, 9))

    class Sym:  # stands in for TensorRT's symbolic dimension expressions
        def __init__(self, text):
            self.text = text

        def __floordiv__(self, other):
            return Sym(f"({self.text})//{other}")

    n, kc, h, w = Sym("N"), Sym("kC"), Sym("h"), Sym("w")
    (vn, vc), (mn, mh, mw) = trt_plugin.output_dims((n, kc, h, w), 4)
    assert vn is n and vc.text == "(kC)//4" and (mn, mh, mw) == (n, h, w)
    assert trt_plugin.output_dtypes("half") == ("half", "half")
    with pytest.raises(ValueError, match="4-D"):
        trt_plugin.output_dims((2, 32, 7), 4)
    trt_plugin.check_attributes(4, "max", "softmax", channels=32)
    for bad in [dict(k=0), dict(pool="sum"), dict(map_weight="norm"), dict(channels=30)]:
        args = {"k": 4, "pool": "max", "map_weight": "softmax", "channels": 32, **bad}
        with pytest.raises(ValueError, match="CrossSpatialPoolMap"):
            trt_plugin.check_attributes(**args)


def test_triton_kernel_matches_pytorch_in_the_interpreter():
    """The plugin's kernel, run by Triton's CPU interpreter (the GPU run is test_plugin_gpu.py)."""
    pytest.importorskip("triton")
    code = (
        "import torch\n"
        "from export.triton_kernel import cross_spatial_pool_map_triton\n"
        "from wscnet.pool_map import cross_spatial_pool_map\n"
        "torch.manual_seed(0)\n"
        "for pool in ('max', 'avg'):\n"
        "    for mw in ('softmax', 'raw'):\n"
        "        f = torch.randn(3, 15, 3, 5) * 3\n"
        "        v, m = cross_spatial_pool_map_triton(f, 3, pool, mw)\n"
        "        rv, rm = cross_spatial_pool_map(f, 3, pool, mw)\n"
        "        torch.testing.assert_close(v, rv, atol=1e-5, rtol=1e-5)\n"
        "        torch.testing.assert_close(m, rm, atol=1e-5, rtol=1e-5)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_kernel_launch_config():
    from export.triton_kernel import launch_config

    cfg = launch_config(2, 32, 14, 14, 4)
    assert cfg["grid"] == (2,) and cfg["C"] == 8 and cfg["HW"] == 196
    assert (cfg["BLOCK_K"], cfg["BLOCK_HW"], cfg["BLOCK_C"]) == (4, 256, 8)
    with pytest.raises(ValueError, match="multiple of k"):
        launch_config(1, 30, 7, 7, 4)


def test_int32_bias_dequantize_is_folded_for_tensorrt(tmp_path):
    import contextlib
    import io

    import numpy as np
    import onnxruntime as ort

    from export.int8 import quantize_int8
    from export.onnx_export import export_onnx
    from export.testing import make_trained_checkpoint, write_image_folder

    ckpt = make_trained_checkpoint(tmp_path / "ckpt.pt", size=64, steps=2)
    images = write_image_folder(tmp_path / "images", 6, 1, 64)
    fp32 = export_onnx(ckpt, tmp_path / "model.onnx")
    with contextlib.redirect_stdout(io.StringIO()):
        int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx", images, n=6, method="max")
    model = onnx.load(str(int8))
    int32 = {i.name for i in model.graph.initializer if i.data_type == TensorProto.INT32}
    before = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    assert before  # the quantizer did quantize biases
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    assert tb.fold_int32_bias_dequantize(model) == len(before)
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    onnx.checker.check_model(model, full_check=True)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-5)
