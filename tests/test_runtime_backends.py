"""Metadata and the ONNX Runtime back-end on a real exported model; execution-provider choice."""

import json

import numpy as np
import onnx
import pytest
from runtime_fixtures import MODEL_SIZE, NUM_CLASSES, exported_model

from runtime.backends import open_backend
from runtime.backends.onnxruntime_backend import CPU, CUDA, TENSORRT, choose_providers
from runtime.errors import RuntimeUserError
from runtime.metadata import ModelMetadata


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def test_metadata_comes_from_the_model_file(model):
    with open_backend(model, device="cpu") as backend:
        meta = backend.metadata
        assert meta.class_names == tuple(f"class_{c}" for c in range(NUM_CLASSES))
        assert meta.input_size == MODEL_SIZE
        assert meta.mean == pytest.approx((0.485, 0.456, 0.406))
        assert meta.std == pytest.approx((0.229, 0.224, 0.225))
        assert meta.precision == "fp32"
        assert meta.extra["arch"] == "resnet18"
        assert backend.description == "onnxruntime[CPUExecutionProvider]"


def test_outputs_match_the_pytorch_model(model):
    import torch

    from wscnet.checkpoint import load_checkpoint
    from wscnet.model import deploy_outputs

    torch_model, _ = load_checkpoint(model.parent / "r18.pt")
    x = np.random.default_rng(0).normal(size=(2, 3, MODEL_SIZE, MODEL_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in deploy_outputs(torch_model(torch.from_numpy(x)))]
    with open_backend(model, device="cpu", threads=1) as backend:
        got = backend.infer(x)  # batch 2 on a batch-1 model: run in slices
    assert set(got) == {"probs", "det_scores", "sentiment_map"}
    assert got["probs"].shape == (2, NUM_CLASSES) and got["sentiment_map"].shape == (2, 1, 2, 2)
    for name, ref in zip(("probs", "det_scores", "sentiment_map"), expected):
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4)


def test_missing_metadata_is_named(model, tmp_path):
    proto = onnx.load(str(model))
    kept = [p for p in proto.metadata_props if p.key not in ("class_names", "std")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(RuntimeUserError, match=r"bare.onnx: model metadata lacks class_names, std"):
        open_backend(bare)


def test_metadata_parsing_rules():
    props = {
        "class_names": json.dumps(["a", "b"]),
        "input_size": "[224, 224]",
        "mean": "[0.5, 0.5, 0.5]",
        "std": "[0.25, 0.25, 0.25]",
        "precision": "int8",
        "arch": "resnet18",
    }
    meta = ModelMetadata.from_props(props, "m.onnx")
    assert (meta.input_size, meta.precision, meta.num_classes, meta.extra) == (224, "int8", 2, {"arch": "resnet18"})
    with pytest.raises(RuntimeUserError, match="input_size must be square"):
        ModelMetadata.from_props({**props, "input_size": "[224, 320]"}, "m.onnx")
    with pytest.raises(RuntimeUserError, match="mean and std must be 3 values"):
        ModelMetadata.from_props({**props, "std": "[0.2, 0.2]"}, "m.onnx")


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "model.pt",
            b"x",
            r"model\.pt: a PyTorch training checkpoint; .* run `python cli\.py export .*model\.pt` first",
        ),
        ("model.tflite", b"x", "unknown model type '.tflite'"),
        ("model.onnx", b"garbage", "ONNX Runtime cannot load this model"),
    ],
)
def test_unloadable_models_are_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RuntimeUserError, match=message) as info:
        open_backend(path)
    assert "\n" not in str(info.value)
    with pytest.raises(RuntimeUserError, match="model file not found"):
        open_backend(tmp_path / "absent.onnx")
    with pytest.raises(RuntimeUserError, match="unknown device"):
        open_backend(path, device="npu")


def test_engine_on_cpu_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(RuntimeUserError, match="runs only on a GPU"):
        open_backend(engine, device="cpu")


def test_provider_choice():
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", [TENSORRT, CUDA, CPU]) == [TENSORRT, CUDA, CPU]
    assert choose_providers("cpu", [TENSORRT, CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [TENSORRT, CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(RuntimeUserError, match="--device cuda needs onnxruntime's CUDAExecutionProvider"):
        choose_providers("cuda", ["AzureExecutionProvider", CPU])
    with pytest.raises(RuntimeUserError, match="--device tensorrt needs"):
        choose_providers("tensorrt", [CUDA, CPU])


def test_cuda_execution_provider_when_present(model):
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu on a GPU box)")
    x = np.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), np.float32)
    with open_backend(model, device="cuda") as gpu, open_backend(model, device="cpu") as cpu:
        assert gpu.providers[0] == CUDA
        np.testing.assert_allclose(gpu.infer(x)["probs"], cpu.infer(x)["probs"], atol=1e-3)
