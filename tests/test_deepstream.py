"""DeepStream drop-in: the nvinfer config and labels written from the engine sidecar (no TensorRT
needed), and normalisation folded into the graph for models whose std differs per channel."""

import configparser
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import tensorrt_build as tb
from export.deepstream import fold_normalization, nvinfer_config, write_deepstream_files
from export.onnx_metadata import metadata_from_checkpoint, read_metadata

CKPT = {
    "model_config": {
        "arch": "resnet18",
        "k": 4,
        "head": "wscnet",
        "pool": "max",
        "map_weight": "softmax",
        "coupling": "both",
    },
    "class_names": ["amusement", "anger", "awe"],
    "mean": [0.5, 0.4, 0.3],
    "std": [0.25, 0.25, 0.25],
    "input_size": 96,
}


def _sidecar(ckpt=CKPT, precision="fp16", batch=(1, 4, 8), folded=False) -> dict:
    meta = metadata_from_checkpoint(ckpt, img_size=96, fused_op=True)
    if folded:
        meta = {**meta, "normalization_folded": "1"}
    return tb.sidecar_data(
        meta,
        tensorrt_version="10.13.2.6",
        gpu_name="NVIDIA Jetson AGX Orin",
        compute_capability="8.7",
        built_from=Path("model.fp16.onnx"),
        input_size=96,
        batch=batch,
        plugins=[],
        precision=precision,
        fused_node="aot-plugin",
    )


def _parse(text: str) -> dict:
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return dict(parser["property"])


@pytest.mark.parametrize("precision, mode", [("fp32", "0"), ("int8", "1"), ("fp16", "2")])
def test_config_keys_match_the_sidecar(tmp_path, precision, mode):
    sidecar = _sidecar(precision=precision)
    engine = tmp_path / f"model.{precision}.engine"
    written = write_deepstream_files(engine, sidecar)
    config, labels = written
    assert config.name == f"model.{precision}.nvinfer.txt" and labels.name == f"model.{precision}.labels.txt"
    keys = _parse(config.read_text())
    assert keys["model-engine-file"] == engine.name and keys["labelfile-path"] == labels.name
    assert keys["network-mode"] == mode and keys["batch-size"] == "8" and keys["infer-dims"] == "3;96;96"
    assert keys["model-color-format"] == "0" and keys["network-type"] == "1" and keys["output-tensor-meta"] == "1"
    assert float(keys["net-scale-factor"]) == pytest.approx(1 / 63.75)  # 1 / (255 × 0.25)
    assert [float(v) for v in keys["offsets"].split(";")] == pytest.approx([127.5, 102.0, 76.5])  # 255 × mean
    assert labels.read_text() == "amusement;anger;awe\n"
    assert keys["maintain-aspect-ratio"] == "0"  # no recorded contract: squash, like nvinfer's default


def test_letterbox_contract_keeps_the_aspect():
    contract = {"input_size": 96, "mean": CKPT["mean"], "std": CKPT["std"], "geometry": "letterbox"}
    keys = _parse(nvinfer_config(_sidecar({**CKPT, "input_contract": contract}), "m.engine", "m.labels.txt"))
    assert keys["maintain-aspect-ratio"] == "1" and keys["symmetric-padding"] == "1"


def test_nvinfer_preprocessing_equals_the_models():
    """nvinfer computes scale × (x − offset) from 0–255 pixels; the model wants (x/255 − mean)/std."""
    keys = _parse(nvinfer_config(_sidecar(), "m.engine", "m.labels.txt"))
    scale, offsets = float(keys["net-scale-factor"]), [float(v) for v in keys["offsets"].split(";")]
    pixels = np.array([0.0, 17.0, 128.0, 255.0])
    for c in range(3):
        expected = (pixels / 255 - CKPT["mean"][c]) / CKPT["std"][c]
        np.testing.assert_allclose(scale * (pixels - offsets[c]), expected, rtol=1e-6, atol=1e-6)


def test_per_channel_std_needs_folding_and_writes_nothing(tmp_path, caplog):
    imagenet = {**CKPT, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert write_deepstream_files(tmp_path / "m.engine", _sidecar(imagenet)) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "export" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "--fold-normalization" in warnings[0] and not list(tmp_path.iterdir())
    keys = _parse(nvinfer_config(_sidecar(imagenet, folded=True), "m.engine", "m.labels.txt"))
    assert float(keys["net-scale-factor"]) == 1.0 and keys["offsets"] == "0.0;0.0;0.0"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from export.onnx_export import export_onnx
    from export.testing import make_trained_checkpoint, write_image_folder

    root = tmp_path_factory.mktemp("deepstream")
    ckpt = make_trained_checkpoint(root / "ckpt.pt", size=64, steps=4)
    return {
        "ckpt": ckpt,
        "onnx": export_onnx(ckpt, root / "model.onnx"),
        "images": write_image_folder(root / "images", 6, 1, 64, seed=4),
        "root": root,
    }


def test_folded_model_takes_0_255_rgb(exported):
    model = onnx.load(str(exported["onnx"]))
    meta = read_metadata(model)
    mean, std = (np.array(json.loads(meta[k]), np.float32).reshape(1, 3, 1, 1) for k in ("mean", "std"))
    fold_normalization(model)
    onnx.checker.check_model(model, full_check=True)
    folded = read_metadata(model)
    assert folded["normalization_folded"] == "1" and json.loads(folded["mean"]) == [0.0, 0.0, 0.0]
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 64)).astype(np.float32)

    def run(m, x):
        model_bytes = m.SerializeToString() if isinstance(m, onnx.ModelProto) else str(m)
        return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(None, {"image": x})

    for got, want in zip(run(model, pixels), run(exported["onnx"], (pixels / 255 - mean) / std)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_folded_export_passes_parity_against_pytorch(exported, tmp_path):
    from export.exporter import _fold_normalization
    from export.parity import run_parity

    path = tmp_path / "folded.onnx"
    path.write_bytes(exported["onnx"].read_bytes())
    _fold_normalization(path)
    report = run_parity(path, exported["ckpt"], exported["images"], n=6, progress=False)
    assert report["passed"] and report["top1_agreement"] == 1.0
