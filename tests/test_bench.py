"""bench: real exports, real ONNX Runtime sessions in worker processes, real files written.

Tiny on purpose (resnet18 at 64 px, a few timed calls); no assertion is about speed.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.bench import BenchSettings, run_bench
from benchmarks.measure import summarise, time_calls, time_interleaved
from benchmarks.report import REQUIRED_COLUMNS
from wscnet.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from export.testing import make_trained_checkpoint

    path = tmp_path_factory.mktemp("bench_ckpt") / "tiny.pt"
    return make_trained_checkpoint(path, arch="resnet18", num_classes=4, size=64, steps=6)


@pytest.fixture(scope="module")
def bench_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    settings = BenchSettings(
        backends=["ort", "torch-cuda", "ort-cuda", "trt-fp16"],
        batches=[2],
        warmup=1,
        iters=3,
        duration=None,
        agreement_images=5,
        video=Path("test"),
        video_frames=6,
        video_backend="ort",
        peak_n=256,
    )
    return out, run_bench([str(tiny_checkpoint)], out, settings)


def test_measured_row_has_every_column_and_agrees_with_torch(bench_run, tiny_checkpoint):
    out, results = bench_run
    (row,) = [r for r in results["rows"] if r["backend"] == "ort"]
    assert row["status"] == "ok", row["reason"]
    assert set(REQUIRED_COLUMNS) <= set(row)
    assert (row["precision"], row["batch"], row["img_size"], row["iters"]) == ("fp32", 2, 64, 3)
    stats = [row[k] for k in ("min_ms", "median_ms", "p90_ms", "p99_ms")]
    assert all(v > 0 for v in stats) and stats == sorted(stats)
    assert row["min_ms"] <= row["mean_ms"] <= row["max_ms"]
    assert row["images_per_s"] == pytest.approx(2 * 1000 / row["mean_ms"])
    model_file = Path(row["model_file"])
    assert model_file.suffix == ".onnx" and model_file.parent == out / "models"
    assert row["size_mb"] == pytest.approx(model_file.stat().st_size / 1e6)
    assert row["peak_mem_mb"] > 10
    # same FP32 model in ONNX Runtime as in torch: the same top class on every check image
    assert row["top1_agreement"] == 1.0 and row["agreement_images"] == 5
    assert row["probs_max_abs"] < 1e-4 and row["map_correlation"] > 0.999
    assert row["validation_passed"] is True
    assert row["gflops"] > 0
    assert row["gflops_per_s"] == pytest.approx(row["gflops"] * 2 / (row["median_ms"] / 1e3))
    assert 0 < row["pct_of_peak"]


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: cuda rows are measured, not skipped")
def test_gpu_backends_are_listed_as_skipped_with_reason(bench_run):
    _, results = bench_run
    skipped = {r["backend"]: r for r in results["rows"] if r["status"] == "skipped"}
    assert set(skipped) == {"torch-cuda", "ort-cuda", "trt-fp16"}
    for row in skipped.values():
        assert "CUDA" in row["reason"] and row["median_ms"] is None
        assert set(REQUIRED_COLUMNS) <= set(row)
    markdown = (bench_run[0] / "bench.md").read_text()
    assert "Skipped: " in markdown and "`trt-fp16`: no CUDA GPU" in markdown


def test_json_markdown_and_chart_are_written(bench_run):
    out, results = bench_run
    saved = json.loads((out / "bench.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    machine = saved["machine"]
    assert machine["cpu"] and machine["cpu_logical_cores"] >= 1 and "onnxruntime" in machine["versions"]
    assert saved["peak"]["fp32_gflops"] > 0
    markdown = (out / "bench.md").read_text().splitlines()
    header = [c.strip() for c in markdown[0].strip("|").split("|")]
    assert {
        "back-end",
        "precision",
        "batch",
        "median ms",
        "p90 ms",
        "p99 ms",
        "images/s",
        "GFLOP/s",
        "% of peak",
        "peak MB",
        "file MB",
        "top-1 agree",
    } <= set(header)
    ort_lines = [line for line in markdown if line.startswith("| tiny | 64 | ort | fp32 | 2 |")]
    assert len(ort_lines) == 1 and len(ort_lines[0].strip("|").split("|")) == len(header)
    chart = cv2.imread(str(out / "bench.png"))
    assert chart is not None and chart.shape[0] > 100 and chart.shape[1] > 100


def test_video_pipeline_is_measured_next_to_the_model(bench_run):
    out, results = bench_run
    (video,) = results["video"]
    assert video["error"] is None and video["video_backend"] == "ort"
    assert video["frames"] == 6 and video["resolution"] == "640x480"
    assert video["pipeline_fps"] > 0 and video["model_only_ms"] > 0
    assert (out / "test-640x480.mp4").is_file()
    assert "| tiny @ 64 | ort (tiny_64.onnx) | 640x480 | 6 |" in (out / "bench.md").read_text()


def test_a_wrong_model_is_marked_failed_validation(tiny_checkpoint, tmp_path):
    """The tiny checkpoint's own export (same provenance) with its classifier bias changed so it
    always says class 3: what a broken conversion gives, checked against the checkpoint."""
    import onnx
    from onnx import numpy_helper

    from export.onnx_export import export_onnx

    wrong = export_onnx(tiny_checkpoint, tmp_path / "wrong.onnx", img_size=64)
    proto = onnx.load(str(wrong))
    (bias,) = [init for init in proto.graph.initializer if init.name.endswith("classifier.bias")]
    bias.CopyFrom(numpy_helper.from_array(np.array([0.0, 0.0, 0.0, 50.0], np.float32), bias.name))
    onnx.save(proto, str(wrong))
    settings = BenchSettings(
        backends=["ort"],
        batches=[1],
        warmup=0,
        iters=1,
        duration=None,
        agreement_images=8,
        reference=tiny_checkpoint,
        peak_n=256,
    )
    results = run_bench([str(wrong)], tmp_path / "out", settings)
    (row,) = results["rows"]
    assert row["model"] == "wrong" and row["top1_agreement"] < 0.9
    assert row["validation_passed"] is False
    assert row["status"] == "failed validation" and "top1 agreement" in row["reason"]
    assert "failed validation" in (tmp_path / "out" / "bench.md").read_text()


class CountingRunner:
    """Stands in for a back-end in the loop test: counts calls, reports a fixed device time."""

    def __init__(self):
        self.calls = 0
        self.last_device_ms = 0.5

    def infer(self, batch):
        self.calls += 1
        return {"probs": np.tile(np.eye(3, dtype=np.float32)[self.calls % 3], (len(batch), 1))}


def test_loop_runs_warmup_then_exactly_iters_timed_calls():
    runner = CountingRunner()
    host, device = time_calls(runner, np.zeros((2, 3, 8, 8), np.float32), warmup=4, iters=7)
    assert runner.calls == 11 and len(host) == 7 and device == [0.5] * 7
    with pytest.raises(ValueError):
        time_calls(runner, np.zeros((1, 3, 8, 8), np.float32), warmup=0, iters=3, duration=1.0)


def test_duration_mode_keeps_at_least_min_iters():
    host, _ = time_calls(CountingRunner(), np.zeros((1, 3, 8, 8), np.float32), warmup=0, duration=1e-9, min_iters=4)
    assert len(host) == 4


def test_interleaved_rounds_call_each_in_turn_and_time_only_the_calls():
    log = []

    def call(name, seconds):
        return lambda: (log.append(name), time.sleep(seconds))

    times = time_interleaved(
        {"a": call("a", 0.02), "b": call("b", 0.0)},
        warmup=2,
        rounds=3,
        after=lambda name: (log.append(f"after {name}"), time.sleep(0.05)),
    )
    assert log[:4] == ["a", "a", "b", "b"]  # warm-up: each call alone, untimed
    assert log[4:] == ["a", "after a", "b", "after b"] * 3
    assert len(times["a"]) == len(times["b"]) == 3
    assert min(times["a"]) >= 20.0  # the call's own sleep is timed ...
    assert min(times["b"]) < 50.0  # ... the after-hook's 50 ms are not


def test_summary_percentiles():
    stats = summarise(list(range(1, 101)))
    assert (stats["min"], stats["max"], stats["mean"], stats["median"]) == (1, 100, 50.5, 50.5)
    assert stats["p90"] == pytest.approx(np.percentile(range(1, 101), 90))
    assert stats["p99"] == pytest.approx(99.01)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backends": ["tensorflow"]}, "unknown back-end"),
        ({"iters": 3, "duration": 2.0}, "not both"),
        ({"img_sizes": [100]}, "multiple of 32"),
        ({"video": Path("/nonexistent/clip.mp4")}, "video file not found"),
    ],
)
def test_bad_settings_are_one_line_user_errors(kwargs, message):
    settings = BenchSettings(**{"backends": ["ort"], "batches": [1], **kwargs})
    with pytest.raises(UserError, match=message):
        settings.validate()


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "cli.py", "bench", "resnet999", "--out", str(tmp_path), "--iters", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: resnet999: no such file, and not an architecture")
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize(
    "option, value, example",
    [
        ("--img-size", "64x48", "e.g. 224,448 (one side each: inputs are square)"),
        ("--batch", "1;8", "e.g. 1,8"),
    ],
)
def test_cli_list_option_error_shows_an_example_of_that_option(tmp_path, option, value, example):
    proc = subprocess.run(
        [sys.executable, "cli.py", "bench", "resnet18", option, value, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {option} takes comma-separated integers, {example}; got {value!r}"
    ]


class FakeCudart:
    """cuda-python's event calls, answering like the real binding: (error, value) tuples."""

    def __init__(self):
        self.log = []

    def cudaEventCreate(self):
        return 0, object()

    def cudaEventRecord(self, event, stream):
        self.log.append(("record", stream))
        return (0,)

    def cudaEventElapsedTime(self, start, end):
        return 0, 1.25

    def cudaEventDestroy(self, event):
        self.log.append(("destroy",))
        return (0,)


def test_tensorrt_context_is_timed_by_events_around_the_enqueue_only():
    """No GPU here: the wrapper's bookkeeping, with the CUDA binding and the engine stood in for."""
    from benchmarks.device_timing import DeviceTimed
    from runtime.backends.cuda_memory import CudaPythonApi

    class Api:
        cudart = FakeCudart()
        _check = CudaPythonApi._check

    class Context:
        def execute_async_v3(self, stream):
            Api.cudart.log.append(("enqueue", stream))
            return True

        def set_input_shape(self, name, shape):
            return f"{name}{shape}"

    class Backend:
        description = "tensorrt[fake]"

        def __init__(self):
            self.context, self._cuda, self.closed = Context(), Api(), False

        def infer(self, batch):
            assert self.context.execute_async_v3(7)
            return {"probs": batch}

        def close(self):
            self.closed = True

    backend = Backend()
    timed = DeviceTimed(backend)
    assert timed.last_device_ms is None  # nothing ran yet
    assert backend.context.set_input_shape("image", (1,)) == "image(1,)"  # forwarded
    timed.infer(np.zeros(1))
    assert Api.cudart.log == [("record", 7), ("enqueue", 7), ("record", 7)]
    assert timed.last_device_ms == 1.25
    timed.close()
    assert backend.closed and isinstance(backend.context, Context)
    assert Api.cudart.log.count(("destroy",)) == 2


def test_onnx_runtime_backend_has_no_device_time(bench_run):
    (row,) = [r for r in bench_run[1]["rows"] if r["backend"] == "ort"]
    assert row["gpu_median_ms"] is None


def test_onnx_runtime_rows_run_without_torch():
    """Their peak memory is the lean runtime's: the worker's ONNX Runtime path never loads torch."""
    code = (
        "import sys, benchmarks.worker, benchmarks.device_timing, runtime.backends.onnxruntime_backend;"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
