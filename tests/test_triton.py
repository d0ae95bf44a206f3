"""Triton Inference Server: the repository ``export --format triton`` writes, served by a REAL
``tritonserver`` (from the nvidia-pytriton wheel) on loopback ports, and the runtime's triton:// back-end.

The wheel's server has only the python backend, so the CPU models are served (``wscnet_python`` and
the ``wscnet_image`` ensemble with its pre- and post-processing steps); the GPU models (``wscnet_onnx``,
onnxruntime backend; ``wscnet_trt_*``, tensorrt_plan) are NOT served here: their configs are checked
structurally by parsing them into Triton's own ``ModelConfig`` protobuf, and the plan is a stand-in
file (TensorRT cannot run here).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

if importlib.util.find_spec("pytriton") is None:
    pytest.skip(
        "tritonserver comes from the nvidia-pytriton wheel: pip install --no-deps nvidia-pytriton",
        allow_module_level=True,
    )
pytest.importorskip("tritonclient.grpc", reason="the triton extra is not installed")

from runtime_fixtures import MODEL_SIZE, NUM_CLASSES, exported_model, read_jsonl, scene, write_video  # noqa: E402

from export.triton_repo import (  # noqa: E402
    ENSEMBLE_MODEL,
    MAX_QUEUE_DELAY_US,
    ONNX_MODEL,
    POSTPROCESS_MODEL,
    PREPROCESS_MODEL,
    PYTHON_MODEL,
    SERVED_ON_CPU,
)
from export.triton_server import LocalTritonServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    from export.exporter import ExportRequest, run_export

    checkpoint = exported_model(tmp_path_factory).with_name("r18.pt")
    out = tmp_path_factory.mktemp("triton-repo")
    run_export(
        ExportRequest(checkpoint=checkpoint, out=out, format="triton", max_batch=8, parity=False), echo=lambda _: None
    )
    return out


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    log = tmp_path_factory.mktemp("triton-log") / "server.log"
    with LocalTritonServer(repository, models=SERVED_ON_CPU, log=log) as running:
        yield running


def parsed_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize(
    "name, backend, kind", [(PYTHON_MODEL, "python", "KIND_CPU"), (ONNX_MODEL, "onnxruntime", "KIND_GPU")]
)
def test_configs_follow_tritons_model_config_schema(repository, name, backend, kind):
    from tritonclient.grpc import model_config_pb2

    config = parsed_config(repository / name / "config.pbtxt")  # unknown fields or bad syntax raise here
    assert (config.name, config.backend, config.max_batch_size) == (name, backend, 8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("image", [3, MODEL_SIZE, MODEL_SIZE])]
    ort_model = onnx.load(str(repository / "model.onnx"))
    assert [(t.name, t.data_type) for t in config.output] == [
        (o.name, model_config_pb2.TYPE_FP32) for o in ort_model.graph.output
    ]
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
    for label, model in (
        ("triton", f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}"),
        ("local", str(repository / "model.onnx")),
    ):
        records = tmp_path / f"{label}.jsonl"
        result = cli(
            "webcam",
            "--model",
            model,
            "--source",
            str(video),
            "--jsonl",
            str(records),
            "--no-display",
            "--threads",
            "1",
        )
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


@pytest.mark.parametrize(
    "address, message",
    [
        ("triton://127.0.0.1:{grpc}/no_such_model", "no ready model 'no_such_model'"),
        ("triton://127.0.0.1:{closed}/wscnet_python", "no Triton server answers"),
    ],
)
def test_unknown_model_or_no_server_is_one_line_and_exit_2(server, tmp_path, address, message):
    from export.triton_server import free_port

    model = address.format(grpc=server.grpc_port, closed=free_port())
    result = cli("webcam", "--model", model, "--source", str(write_video(tmp_path / "v.avi", frames=2)), "--no-display")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_server_killed_mid_run_ends_cleanly_with_its_files(repository, tmp_path):
    """A server of its own (this one is killed): webcam retries a bounded number of times, then ends
    with one line, exit 5 (a fault mid-run), and the JSONL and mp4 it wrote so far complete."""
    import os
    import signal
    import time

    video = write_video(tmp_path / "long.avi", frames=150)
    records, saved = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    server = LocalTritonServer(repository, models=(PYTHON_MODEL,)).start()
    try:
        run = subprocess.Popen(
            [
                sys.executable,
                "cli.py",
                "webcam",
                "--model",
                f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}",
                "--source",
                str(video),
                "--jsonl",
                str(records),
                "--save",
                str(saved),
                "--no-display",
                "--realtime",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (records.exists() and records.stat().st_size):
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(server.process.pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=90)
    finally:
        server.stop()
    assert run.returncode == 5, stderr
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
        runs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "cli.py",
                    "webcam",
                    "--model",
                    f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}",
                    "--source",
                    str(video),
                    "--jsonl",
                    str(tmp_path / f"v{n}.jsonl"),
                    "--no-display",
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for run in runs:
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr
    assert [len(read_jsonl(tmp_path / f"v{n}.jsonl")) for n in frames] == frames
    # each frame is one request per view of the model's contract (squash + crop here: 2)
    assert served() - before == sum(frames) * 2


# ---- the wscnet_image ensemble: encoded pictures in, one answer out ---------------------------------


def ask_ensemble(server, data: bytes) -> dict:
    """One encoded picture to ``wscnet_image`` over gRPC, as any tritonclient user sends it."""
    import tritonclient.grpc as client

    tensor = client.InferInput("image_bytes", [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    with client.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as remote:
        result = remote.infer(ENSEMBLE_MODEL, [tensor])
        config = remote.get_model_config(ENSEMBLE_MODEL, as_json=True)["config"]
    names = json.loads(config["parameters"]["class_names"]["string_value"])
    answer = {
        name: result.as_numpy(name)
        for name in ("label_index", "probabilities", "detection_probabilities", "sentiment_map")
    }
    answer["label"] = names[int(answer["label_index"][0])]
    return answer


def test_ensemble_wiring_follows_the_documented_schema(repository):
    """Every step's input_map/output_map keys are tensors of the model it names, every value it
    reads was written by an earlier step (or is the ensemble's input), and the ensemble's outputs
    are the last step's; the views batch is V×(the model's input) with V the contract's views."""
    configs = {
        name: parsed_config(repository / name / "config.pbtxt")
        for name in (ENSEMBLE_MODEL, PREPROCESS_MODEL, PYTHON_MODEL, POSTPROCESS_MODEL)
    }
    ensemble = configs[ENSEMBLE_MODEL]
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 0 and not ensemble.instance_group
    available = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in model.input}
        assert set(step.output_map) <= {t.name for t in model.output}
        assert set(step.input_map.values()) <= available
        available |= set(step.output_map.values())
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        PREPROCESS_MODEL,
        PYTHON_MODEL,
        POSTPROCESS_MODEL,
    ]
    assert {t.name for t in ensemble.output} <= set(ensemble.ensemble_scheduling.step[-1].output_map.values())
    contract = json.loads(ensemble.parameters["input_contract"].string_value)
    views = 1 + len(contract["extra_views"])
    assert list(configs[PREPROCESS_MODEL].output[0].dims) == [views, 3, MODEL_SIZE, MODEL_SIZE]
    assert list(ensemble.input[0].dims) == [-1]


def test_the_steps_run_the_runtime_modules_shipped_beside_them(repository, tmp_path):
    """The pre/post-processing steps carry copies of the runtime's own modules (no re-implementation)
    and those copies import on their own: a Python without this project on its path gets
    ``runtime.framing`` (and the frame → tensor function) from the model folder."""
    for name in (PREPROCESS_MODEL, POSTPROCESS_MODEL):
        shipped = repository / name / "1" / "runtime"
        assert {"preprocess.py", "framing.py", "contract.py"} <= {p.name for p in shipped.iterdir()}
        for copy in shipped.glob("*.py"):
            assert copy.read_bytes() == (REPO / "runtime" / copy.name).read_bytes(), copy
    folder = repository / PREPROCESS_MODEL / "1"
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runtime.framing, runtime.preprocess; "
        "print(runtime.preprocess.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(folder)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == folder / "runtime" / "preprocess.py"


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_ensemble_answer_for_picture_bytes_equals_local_predict(server, repository, tmp_path, suffix):
    """Encoded bytes of a 4:3 picture (two views under the contract) through the ensemble: the label,
    probabilities and map equal ``runtime.Model.predict`` on the same file with the local ONNX."""
    from runtime import Model

    picture = tmp_path / f"picture{suffix}"
    assert cv2.imwrite(str(picture), scene(7, 160, 120))
    remote = ask_ensemble(server, picture.read_bytes())
    with Model(repository / "model.onnx", device="cpu", threads=1) as local_model:
        local = local_model.predict(picture)
    assert remote["label"] == local.label
    np.testing.assert_allclose(remote["probabilities"], local.probs, atol=1e-4)
    np.testing.assert_allclose(remote["detection_probabilities"], local.det_scores, atol=1e-4)
    np.testing.assert_allclose(remote["sentiment_map"], local.raw_map, atol=1e-4)


def test_corrupt_bytes_are_an_error_for_that_request_and_the_server_stays_up(server, tmp_path):
    from tritonclient.utils import InferenceServerException

    ok, png = cv2.imencode(".png", scene(2, 96, 96))
    for bad in (b"this is not a picture" * 4, png.tobytes()[:60]):
        with pytest.raises(InferenceServerException, match="not a picture OpenCV can decode"):
            ask_ensemble(server, bad)
    assert ask_ensemble(server, png.tobytes())["probabilities"].shape == (NUM_CLASSES,)


# ---- GPU models: written and checked against the schema, not served here ---------------------------


def fake_engine(folder: Path, metadata: dict, batch) -> Path:
    """A stand-in plan (TensorRT cannot run here) with the sidecar ``export --format engine`` writes."""
    from export.tensorrt_build import sidecar_data

    engine = folder / f"model.{metadata['precision']}.engine"
    engine.write_bytes(b"stand-in for a TensorRT plan: not served here")
    sidecar = sidecar_data(
        metadata,
        tensorrt_version="10.13.0",
        gpu_name="stand-in",
        compute_capability="8.9",
        built_from=folder / "model.onnx",
        input_size=MODEL_SIZE,
        batch=batch,
        plugins=[],
        precision=metadata["precision"],
    )
    engine.with_name(engine.name + ".json").write_text(json.dumps(sidecar))
    return engine


def test_gpu_models_fp32_onnx_with_tensorrt_fp16_and_the_plan_beside_it(repository, tmp_path):
    """Not served here. The onnxruntime model is the FP32 file with TensorRT's FP16 precision mode;
    an engine in the folder becomes a ``tensorrt_plan`` model whose batch follows the engine's profile."""
    import shutil

    from export.onnx_metadata import read_metadata
    from export.triton_repo import write_triton_repository

    shutil.copy2(repository / "model.onnx", tmp_path / "model.onnx")
    metadata = {**read_metadata(onnx.load(str(tmp_path / "model.onnx"))), "precision": "fp16"}
    engine = fake_engine(tmp_path, metadata, batch=(1, 4, 6))
    written = write_triton_repository(tmp_path / "model.onnx", tmp_path, max_batch=8, tensorrt_fp16=True)
    configs = {path.parent.name: parsed_config(path) for path in written}
    assert set(configs) == {
        PYTHON_MODEL,
        ONNX_MODEL,
        PREPROCESS_MODEL,
        POSTPROCESS_MODEL,
        ENSEMBLE_MODEL,
        "wscnet_trt_fp16",
    }
    gpu = configs[ONNX_MODEL]
    (accelerator,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert (accelerator.name, dict(accelerator.parameters)) == ("tensorrt", {"precision_mode": "FP16"})
    assert read_metadata(onnx.load(str(tmp_path / ONNX_MODEL / "1" / "model.onnx")))["precision"] == "fp32"
    plan = configs["wscnet_trt_fp16"]
    assert (plan.platform, plan.max_batch_size) == ("tensorrt_plan", 6)  # the engine's profile ends at 6
    assert [(t.name, list(t.dims)) for t in plan.input] == [("image", [3, MODEL_SIZE, MODEL_SIZE])]
    assert [t.name for t in plan.output] == ["probs", "det_scores", "sentiment_map"]
    assert plan.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US
    assert plan.parameters["precision"].string_value == "fp16"
    assert (tmp_path / "wscnet_trt_fp16" / "1" / "model.plan").read_bytes() == engine.read_bytes()


def test_a_fixed_batch_engine_is_served_unbatched_and_another_models_engine_is_refused(repository, tmp_path):
    from export.onnx_metadata import read_metadata
    from export.triton_repo import write_tensorrt_model
    from wscnet.errors import UserError

    fp32 = repository / "model.onnx"
    metadata = {**read_metadata(onnx.load(str(fp32))), "precision": "int8"}
    folder = write_tensorrt_model(fake_engine(tmp_path, metadata, batch=1), fp32, tmp_path, max_batch=8)
    plan = parsed_config(folder / "config.pbtxt")
    assert plan.max_batch_size == 0 and not plan.HasField("dynamic_batching")
    assert list(plan.input[0].dims) == [1, 3, MODEL_SIZE, MODEL_SIZE]
    other = {**metadata, "class_names": json.dumps([f"other_{i}" for i in range(NUM_CLASSES)])}
    with pytest.raises(UserError, match="built from another model"):
        write_tensorrt_model(fake_engine(tmp_path, other, batch=1), fp32, tmp_path, max_batch=8)


# ---- parity and bench with a served model ----------------------------------------------------------


def test_parity_checks_a_served_model_against_its_checkpoint(server, tmp_path):
    """``parity triton://...``: the checkpoint it records, the held-out pictures through the server,
    the FP32 targets met (top-1 1.0, probabilities within 1e-4 of PyTorch); no parity.json anywhere."""
    pictures = tmp_path / "held-out"
    pictures.mkdir()
    for i in range(5):
        assert cv2.imwrite(str(pictures / f"{i}.png"), scene(3 * i, 96, 72))
    url = f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}"
    result = cli("parity", url, "--data", str(pictures), "--n", "5", "--batch", "3")
    assert result.returncode == 0, result.stderr
    assert "using the checkpoint wscnet_python was exported from" in result.stderr
    assert "PASS" in result.stdout and "top-1 agreement 100.00 %" in result.stdout, result.stdout
    assert not list(tmp_path.rglob("parity.json")) and not (REPO / "parity.json").exists()


def test_bench_times_a_served_model_against_its_pytorch_reference(server, tmp_path):
    """A ``triton`` row: timed through the server, its outputs checked against the checkpoint the
    model records (bench's own PyTorch reference); a file back-end has nothing to run for it."""
    url = f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}"
    result = cli(
        "bench",
        url,
        "--backends",
        "triton,ort",
        "--batch",
        "3",
        "--iters",
        "3",
        "--agreement-images",
        "4",
        "--peak-n",
        "64",
        "--out",
        str(tmp_path / "bench"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = {r["backend"]: r for r in json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]}
    served = rows["triton"]
    assert (served["status"], served["batch"], served["iters"]) == ("ok", 3, 3), served
    assert served["description"].startswith("triton[grpc") and served["images_per_s"] > 0
    assert served["validation_passed"] and served["top1_agreement"] == 1.0 and served["agreement_images"] == 4
    assert rows["ort"]["status"] == "skipped"
    assert rows["ort"]["reason"] == "a model on a Triton server runs on the triton row (and torch, its reference)"
