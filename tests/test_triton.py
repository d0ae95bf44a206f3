"""Triton Inference Server: the repository ``export --format triton`` writes, served by a REAL
``tritonserver`` (from the nvidia-pytriton wheel) on loopback ports, and the runtime's triton:// back-end.

The wheel's server has only the python backend, so the ``wscnet_python`` model is served; the GPU
model (``wscnet_onnx``, onnxruntime backend) is NOT served here: its config is checked structurally
by parsing it into Triton's own ``ModelConfig`` protobuf.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

if importlib.util.find_spec("pytriton") is None:
    pytest.skip("tritonserver comes from the nvidia-pytriton wheel: pip install --no-deps nvidia-pytriton",
                allow_module_level=True)
pytest.importorskip("tritonclient.grpc", reason="the triton extra is not installed")

from export.triton_repo import MAX_QUEUE_DELAY_US, ONNX_MODEL, PYTHON_MODEL  # noqa: E402
from export.triton_server import LocalTritonServer  # noqa: E402
from runtime_fixtures import MODEL_SIZE, NUM_CLASSES, exported_model, read_jsonl, write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    from export.pipeline import ExportRequest, run_export

    checkpoint = exported_model(tmp_path_factory).with_name("r18.pt")
    out = tmp_path_factory.mktemp("triton-repo")
    run_export(ExportRequest(checkpoint=checkpoint, out=out, format="triton", max_batch=8, parity=False), echo=lambda _: None)
    return out


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    log = tmp_path_factory.mktemp("triton-log") / "server.log"
    with LocalTritonServer(repository, models=(PYTHON_MODEL,), log=log) as running:
        yield running


def parsed_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("name, backend, kind", [(PYTHON_MODEL, "python", "KIND_CPU"), (ONNX_MODEL, "onnxruntime", "KIND_GPU")])
def test_configs_follow_tritons_model_config_schema(repository, name, backend, kind):
    from tritonclient.grpc import model_config_pb2

    config = parsed_config(repository / name / "config.pbtxt")  # unknown fields or bad syntax raise here
    assert (config.name, config.backend, config.max_batch_size) == (name, backend, 8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("image", [3, MODEL_SIZE, MODEL_SIZE])]
    ort_model = onnx.load(str(repository / "model.onnx"))
    assert [(t.name, t.data_type) for t in config.output] == [
        (o.name, model_config_pb2.TYPE_FP32) for o in ort_model.graph.output]
    assert list(config.output[0].dims) == [NUM_CLASSES]
    assert config.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US
    assert [model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group] == [kind]
    metadata = {p.key: p.value for p in ort_model.metadata_props}
    assert json.loads(config.parameters["class_names"].string_value) == json.loads(metadata["class_names"])
    assert json.loads(config.parameters["input_contract"].string_value) == json.loads(metadata["input_contract"])
    assert (repository / name / "1" / "model.onnx").read_bytes() == (repository / "model.onnx").read_bytes()


def test_webcam_over_grpc_equals_a_local_onnx_runtime_run(server, repository, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=6)
    runs = {}
    for label, model in (("triton", f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}"),
                         ("local", str(repository / "model.onnx"))):
        records = tmp_path / f"{label}.jsonl"
        result = cli("webcam", "--model", model, "--source", str(video), "--jsonl", str(records), "--no-display",
                     "--threads", "1")
        assert result.returncode == 0, result.stderr
        runs[label] = read_jsonl(records)
    assert len(runs["triton"]) == len(runs["local"]) == 6
    for remote, local in zip(runs["triton"], runs["local"]):
        assert remote["label"] == local["label"]
        assert remote["probabilities"].keys() == local["probabilities"].keys()
        for name, p in local["probabilities"].items():
            assert abs(remote["probabilities"][name] - p) <= 1e-4


def test_http_backend_outputs_equal_onnx_runtime_for_a_batch(server, repository):
    import onnxruntime as ort

    from runtime.backends import open_backend

    batch = np.random.default_rng(3).normal(size=(5, 3, MODEL_SIZE, MODEL_SIZE)).astype(np.float32)
    with open_backend(f"triton+http://127.0.0.1:{server.http_port}/{PYTHON_MODEL}") as backend:
        assert backend.metadata.num_classes == NUM_CLASSES
        remote = backend.infer(batch)
    session = ort.InferenceSession(str(repository / "model.onnx"), providers=["CPUExecutionProvider"])
    local = dict(zip(["probs", "det_scores", "sentiment_map"], session.run(None, {"image": batch})))
    for name, value in local.items():
        np.testing.assert_allclose(remote[name], value, atol=1e-5)


@pytest.mark.parametrize("address, message", [
    ("triton://127.0.0.1:{grpc}/no_such_model", "no ready model 'no_such_model'"),
    ("triton://127.0.0.1:{closed}/wscnet_python", "no Triton server answers"),
])
def test_unknown_model_or_no_server_is_one_line_and_exit_2(server, tmp_path, address, message):
    from export.triton_server import free_port

    model = address.format(grpc=server.grpc_port, closed=free_port())
    result = cli("webcam", "--model", model, "--source", str(write_video(tmp_path / "v.avi", frames=2)), "--no-display")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_server_killed_mid_run_ends_cleanly_with_its_files(repository, tmp_path):
    """A server of its own (this one is killed): webcam retries a bounded number of times, then ends
    with one line, exit 2, and the JSONL and mp4 it wrote so far complete."""
    import os
    import signal
    import time

    video = write_video(tmp_path / "long.avi", frames=150)
    records, saved = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    server = LocalTritonServer(repository, models=(PYTHON_MODEL,)).start()
    try:
        run = subprocess.Popen(
            [sys.executable, "cli.py", "webcam", "--model", f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}",
             "--source", str(video), "--jsonl", str(records), "--save", str(saved), "--no-display", "--realtime"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.glob(".out.*.jsonl")) + ([records] if records.exists() else []):
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(server.process.pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=90)
    finally:
        server.stop()
    assert run.returncode == 2, stderr
    assert "stopped answering after" in stderr.strip().splitlines()[-1]
    rows = read_jsonl(records)
    assert 0 < len(rows) < 150
    assert [row["index"] for row in rows] == list(range(len(rows)))
    import cv2

    capture = cv2.VideoCapture(str(saved))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    capture.release()


def test_four_webcam_processes_share_one_server(server, tmp_path):
    """Four clients at once: every run completes, and the server's own statistics count all their frames."""
    import tritonclient.http as client

    def served() -> int:
        stats = client.InferenceServerClient(f"127.0.0.1:{server.http_port}").get_inference_statistics(PYTHON_MODEL)
        return int(stats["model_stats"][0]["inference_count"])

    frames = [3, 4, 5, 6]
    before = served()
    runs = []
    for n in frames:
        video = write_video(tmp_path / f"v{n}.avi", frames=n)
        runs.append(subprocess.Popen(
            [sys.executable, "cli.py", "webcam", "--model", f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}",
             "--source", str(video), "--jsonl", str(tmp_path / f"v{n}.jsonl"), "--no-display"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for run in runs:
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr
    assert [len(read_jsonl(tmp_path / f"v{n}.jsonl")) for n in frames] == frames
    # each frame is one request per view of the model's contract (squash + crop here: 2)
    assert served() - before == sum(frames) * 2
