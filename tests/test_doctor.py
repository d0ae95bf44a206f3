"""``python cli.py doctor``: real versions and devices of this machine, a real smoke test of ONNX Runtime."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import torch

from jobs.doctor import run_doctor

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "cli.py", "doctor", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_versions_and_devices_one_line_each():
    lines: list[str] = []
    report = run_doctor(smoke=False, echo=lines.append)
    items = {item.name: item for item in report.items}
    assert len(lines) == len(report.items) and all("\n" not in line for line in lines)
    assert items["torch"].detail.startswith(torch.__version__)
    assert all(p in items["onnxruntime"].detail for p in ort.get_available_providers())
    if torch.cuda.is_available():
        assert "compute capability" in items["gpu 0"].detail
    else:
        assert items["gpu"].status == "skipped"
    assert report.failed_requests == []


def test_smoke_test_of_onnx_runtime_as_json():
    result = _cli("--backends", "ort", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)  # nothing but the JSON on stdout
    smoke = {i["name"]: i for i in report["items"]}["smoke ort"]
    assert smoke["status"] == "ok" and "PASS" in smoke["detail"] and "top-1 agreement 100 %" in smoke["detail"]
    assert report["failed"] == []


def test_requested_backend_that_cannot_run_is_exit_3_with_the_reason():
    result = _cli("--backends", "trt-fp16,ort-quantum")
    assert result.returncode == 3
    assert "error: requested back-end(s) not working here: " in result.stderr
    assert "ort-quantum" in result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("smoke ")}
    assert "unknown back-end" in lines["ort-quantum"]
    if not torch.cuda.is_available():
        assert "trt-fp16" in result.stderr and "skipped" in lines["trt-fp16"] and "no CUDA GPU" in lines["trt-fp16"]


def test_backends_named_as_webcam_device_names_them():
    """``openvino`` (webcam --device) and the older ``ov`` are the same row; ``cpu`` is ONNX Runtime's."""
    result = _cli("--backends", "openvino,ov,cpu", "--no-smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    smoke = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("smoke ")]
    assert smoke == ["ov", "ort"]


def test_an_engine_given_as_model_is_not_a_failed_check_on_a_machine_without_tensorrt(tmp_path):
    from jobs.doctor import model_section

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not opened: engines load only with TensorRT on a GPU")
    report = run_doctor(smoke=False, model=engine, sections=[model_section], echo=lambda line: None)
    assert [(i.name, i.status) for i in report.items] == [("model views", "skipped")] and not report.failed()
