"""OpenVINO back-end on real files: the fused-op ONNX model as ``export`` writes it, its INT8 Q/DQ
variant, real OpenVINO and ONNX Runtime sessions, a real video through ``webcam``.

Skipped where the openvino package is missing, except the test that simulates exactly that.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import MODEL_SIZE, NUM_CLASSES, exported_model, read_jsonl, write_video

from runtime.backends import open_backend
from runtime.errors import RuntimeUserError

REPO = Path(__file__).resolve().parents[1]
needs_openvino = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import openvino"], capture_output=True).returncode != 0,
    reason="openvino is not installed (pip install '.[openvino]')",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The fused fp32 model, its checkpoint, an INT8 Q/DQ copy, and held-out images never trained on."""
    from export.int8 import quantize_int8
    from export.testing import write_image_folder

    model = exported_model(tmp_path_factory)
    root = tmp_path_factory.mktemp("openvino")
    calib = write_image_folder(root / "calib", NUM_CLASSES, per_class=2, size=MODEL_SIZE, seed=3)
    return {
        "fp32": model,
        "checkpoint": model.parent / "r18.pt",
        "int8": quantize_int8(model, root / "model.int8.onnx", calib, n=12),
        "held_out": write_image_folder(root / "held_out", NUM_CLASSES, per_class=6, size=MODEL_SIZE, seed=11),
    }


def has_bf16() -> bool:
    from runtime.backends.openvino_backend import openvino_devices

    return any(d["name"] == "CPU" and "BF16" in d["capabilities"] for d in openvino_devices())


@needs_openvino
def test_fused_model_needs_its_function_inlined_and_then_equals_onnx_runtime(files):
    import openvino

    model = files["fp32"]
    with pytest.raises(Exception, match="CrossSpatialPoolMap"):  # what OpenVINO alone makes of it
        openvino.Core().read_model(str(model))
    batch = held_out_batch(files, 4)
    with open_backend(model, device="cpu") as ort, open_backend(model, device="openvino", threads=1) as ov:
        assert ov.metadata == ort.metadata and ov.metadata.class_names == ort.metadata.class_names
        assert ov.executed_precision == "fp32" and ov.description == "openvino[CPU,fp32]"
        expected, got = ort.infer(batch), ov.infer(batch)
    for name in ("probs", "det_scores", "sentiment_map"):
        assert got[name].shape == expected[name].shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, rtol=1e-4)
    assert np.allclose(got["probs"].sum(axis=1), 1.0, atol=1e-5)


def held_out_batch(files: dict, n: int) -> np.ndarray:
    from export.images import find_images, load_batch
    from runtime.metadata import ModelMetadata

    with open_backend(files["fp32"], device="cpu") as backend:
        meta: ModelMetadata = backend.metadata
    return load_batch(find_images(files["held_out"], n), meta.contract).astype(np.float32)


@needs_openvino
@pytest.mark.parametrize(
    "precision, file, hint", [("fp32", "fp32", None), ("bf16", "fp32", "bf16"), ("int8", "int8", None)]
)
def test_each_precision_passes_its_parity_targets_against_pytorch(files, precision, file, hint):
    from export.parity import THRESHOLDS, run_parity

    if precision == "bf16" and not has_bf16():
        pytest.skip("this CPU cannot compute in BF16")
    report = run_parity(
        files[file], files["checkpoint"], files["held_out"], n=36, device="openvino", precision=hint, progress=False
    )
    assert report["precision"] == precision  # what OpenVINO ran, read from its execution graph
    assert report["backend"] == f"openvino[CPU,{precision}]"
    assert report["n_images"] == 36 and report["thresholds"] == THRESHOLDS[precision]
    assert report["passed"], report


@needs_openvino
def test_bf16_is_named_bf16_and_fp32_really_is_fp32(files):
    if not has_bf16():
        pytest.skip("this CPU cannot compute in BF16")
    batch = held_out_batch(files, 2)
    with (
        open_backend(files["fp32"], device="openvino:CPU", threads=1) as fp32,
        open_backend(files["fp32"], device="openvino", threads=1, precision="bf16") as bf16,
    ):
        assert (fp32.executed_precision, bf16.executed_precision) == ("fp32", "bf16")
        difference = np.abs(fp32.infer(batch)["det_scores"] - bf16.infer(batch)["det_scores"]).max()
    assert 1e-6 < difference < 0.05  # BF16 really ran (rounding visible), and sanely


@needs_openvino
def test_bad_requests_are_one_clear_error(files, tmp_path):
    import onnx

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RuntimeUserError, match="bad.onnx: OpenVINO cannot read this model"):
        open_backend(bad, device="openvino")
    proto = onnx.load(str(files["fp32"]))
    del proto.functions[:]  # the fused node without its body: nothing can define it
    onnx.save(proto, str(tmp_path / "no-body.onnx"))
    with pytest.raises(RuntimeUserError, match="no-body.onnx: OpenVINO cannot read .*CrossSpatialPoolMap"):
        open_backend(tmp_path / "no-body.onnx", device="openvino")
    with pytest.raises(RuntimeUserError, match="no device 'NPU7'.*sees CPU"):
        open_backend(files["fp32"], device="openvino:NPU7")
    with pytest.raises(RuntimeUserError, match="choose fp32 or bf16"):
        open_backend(files["fp32"], device="openvino", precision="fp16")
    with pytest.raises(RuntimeUserError, match="needs an OpenVINO device"):
        open_backend(files["fp32"], device="cpu", precision="bf16")


def test_missing_openvino_is_one_line_exit_2(files, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=2)
    block = (
        "import sys, runpy; sys.modules['openvino'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path('cli.py', run_name='__main__')"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            block,
            "cli.py",
            "webcam",
            "--model",
            str(files["fp32"]),
            "--source",
            str(video),
            "--device",
            "openvino",
            "--no-display",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the OpenVINO back-end needs the openvino package (pip install 'wscnet-edge[openvino]')"
    ]
    assert "Traceback" not in result.stderr + result.stdout


@needs_openvino
def test_webcam_on_openvino_gives_onnx_runtimes_labels(files, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=18)
    records = {}
    for name, device in (("ort", "cpu"), ("ov", "openvino")):
        jsonl = tmp_path / f"{name}.jsonl"
        result = subprocess.run(
            [
                sys.executable,
                "cli.py",
                "webcam",
                "--model",
                str(files["fp32"]),
                "--source",
                str(video),
                "--jsonl",
                str(jsonl),
                "--no-display",
                "--device",
                device,
                "--threads",
                "1",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        records[name] = read_jsonl(jsonl)
    ort, ov = records["ort"], records["ov"]
    assert len(ov) == len(ort) == 18
    assert [r["label"] for r in ov] == [r["label"] for r in ort]
    assert len({r["label"] for r in ort}) > 1  # the scene changes class: labels are not all alike
    for a, b in zip(ov, ort):
        assert a["index"] == b["index"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4


@needs_openvino
def test_bench_rows_name_the_precision_they_ran(files, tmp_path):
    from benchmarks.bench import BenchSettings, run_bench

    settings = BenchSettings(
        backends=["ov", "ov-bf16", "ov-int8"],
        batches=[1],
        warmup=1,
        iters=2,
        duration=None,
        agreement_images=6,
        calib_images=4,
        threads=1,
        peak_n=128,
        data=files["held_out"],
    )
    rows = run_bench([str(files["checkpoint"])], tmp_path, settings)["rows"]
    by_name = {row["backend"]: row for row in rows}
    assert by_name["ov"]["precision"] == "fp32" and by_name["ov"]["status"] == "ok"
    assert by_name["ov"]["description"] == "openvino[CPU,fp32]"
    assert by_name["ov-int8"]["precision"] == "int8" and by_name["ov-int8"]["status"] == "ok"
    assert Path(by_name["ov-int8"]["model_file"]).name.endswith(".int8.onnx")
    if has_bf16():
        assert by_name["ov-bf16"]["precision"] == "bf16" and by_name["ov-bf16"]["status"] == "ok"
        assert by_name["ov-bf16"]["model_file"] == by_name["ov"]["model_file"]  # BF16 from the fp32 file
    else:
        assert by_name["ov-bf16"]["status"] == "skipped"


@needs_openvino
def test_openvino_back_end_runs_without_torch(files):
    code = (
        "import sys; from runtime.backends import open_backend; "
        f"b = open_backend({str(files['fp32'])!r}, device='openvino', threads=1); "
        "print(b.description, sorted(m for m in ('torch', 'wscnet', 'export') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["openvino[CPU,fp32]", "[]"]
