"""benchmarks.video_pipeline on a tiny model: the figures it returns hang together (no speed asserted)."""

import json

import cv2
from runtime_fixtures import exported_model, read_all, read_jsonl

from benchmarks.video_pipeline import markdown_table, measure_video_pipeline, write_test_video


def test_measure_video_pipeline(tmp_path_factory, tmp_path):
    model = exported_model(tmp_path_factory)
    video = write_test_video(tmp_path / "clip.mp4", frames=12, size=(160, 120), fps=30.0)
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 12 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
    result = measure_video_pipeline(
        model, video, threads=1, frames=10, model_only_frames=4, warmup=2, rounds=2, out_dir=tmp_path / "out"
    )
    assert result["frames"] == 10 and result["resolution"] == "160x120" and result["rounds"] == 2
    assert result["backend"] == "onnxruntime[CPUExecutionProvider]"
    assert len(result["pipeline_ms_rounds"]) == len(result["model_only_ms_rounds"]) == 2
    ratio = result["pipeline_ms_per_frame"] / result["model_only_ms"]
    assert abs(100 * (ratio - 1) - result["overhead_pct"]) < 0.2
    assert result["pipeline_fps"] > 0 and result["model_only_ms"] > 0
    assert len(read_all(result["outputs"]["video"])) == 10
    assert len(read_jsonl(result["outputs"]["jsonl"])) == 10
    json.dumps(result)  # printable as JSON
    assert "| pipeline cost over model (median round) |" in markdown_table(result)


def test_measure_streams(tmp_path_factory, tmp_path):
    from benchmarks.multistream import markdown, measure_streams
    from runtime.api import Model

    video = write_test_video(tmp_path / "clip.mp4", frames=6, size=(160, 120), fps=30.0)
    with Model(exported_model(tmp_path_factory, batch=None), device="cpu", threads=1) as model:
        result = measure_streams(model, video, 2, rounds=1, live_seconds=0.2, out_dir=tmp_path / "out", model_iters=2)
    batched, per_frame = result["batched"][0], result["per_frame"][0]
    assert batched["frames"] == per_frame["frames"] == 12 and batched["batch_size_mean"] == 2.0
    assert per_frame["batch_size_mean"] == 1.0 and result["live"]["streams"] == 2
    summary = result["summary"]
    assert summary["batched_over_per_frame"] == round(batched["aggregate_fps"] / per_frame["aggregate_fps"], 3)
    assert len(read_jsonl(tmp_path / "out" / "s1.jsonl")) == len(read_all(tmp_path / "out" / "s1.mp4"))
    assert "| 2 |" in markdown([result]) and json.dumps(result)
