"""Frames not inferred: drawn with the newest prediction, every JSONL record says which, in order;
the options that ask for it. Real videos, real ONNX Runtime sessions."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import exported_model, read_all, read_jsonl, scene, write_video

from runtime import Model, Pipeline, PipelineOptions
from runtime.sources import open_source

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return exported_model(tmp_path_factory, batch=None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_infer_every_draws_every_frame_with_the_newest_prediction(model, tmp_path):
    video = write_video(tmp_path / "in.avi", 12)
    result = cli(
        "webcam",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--source",
        str(video),
        "--infer-every",
        "3",
        "--save",
        str(tmp_path / "out.avi"),
        "--jsonl",
        str(tmp_path / "out.jsonl"),
        "--no-display",
    )
    assert result.returncode == 0, result.stderr
    assert "12 frames" in result.stderr and "4 inferred" in result.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["index"] for r in rows] == list(range(12))
    assert [r["inferred"] for r in rows] == [i % 3 == 0 for i in range(12)]
    frames = read_all(video)
    with Model(model, device="cpu") as runtime:
        for i, row in enumerate(rows):
            source = i - i % 3  # the frame whose prediction this one is drawn with
            expected = runtime.predict(frames[source]).probs
            got = np.array(list(row["probabilities"].values()))
            np.testing.assert_allclose(got, expected, atol=1e-5)
            assert (row["inference_ms"] is None) == (i % 3 != 0)
    assert len(read_all(tmp_path / "out.avi")) == 12


def cut_video(path: Path, frames: int, cut: int) -> Path:
    """A still scene that cuts to another one at frame ``cut``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (128, 96))
    for i in range(frames):
        writer.write(scene(0 if i < cut else 9))
    writer.release()
    return path


def test_a_scene_cut_is_inferred_before_its_turn(model, tmp_path):
    video = cut_video(tmp_path / "cut.avi", 14, cut=5)
    options = PipelineOptions(
        jsonl=tmp_path / "cut.jsonl", display=False, progress=False, infer_every=8, infer_on_change=10.0
    )
    with Model(model, device="cpu") as runtime:
        [stats] = Pipeline(runtime, open_source(str(video)), options).run()
    rows = read_jsonl(tmp_path / "cut.jsonl")
    # frame 5 (credit 5/8 >= 0) is inferred on the change; it borrows the next regular one (frame 16)
    assert [r["index"] for r in rows if r["inferred"]] == [0, 5]
    assert stats.inferred == 2 and stats.frames_out == 14


def test_infer_every_without_change_trigger_ignores_the_cut(model, tmp_path):
    video = cut_video(tmp_path / "cut.avi", 14, cut=5)
    options = PipelineOptions(jsonl=tmp_path / "cut.jsonl", display=False, progress=False, infer_every=8)
    with Model(model, device="cpu") as runtime:
        Pipeline(runtime, open_source(str(video)), options).run()
    assert [r["index"] for r in read_jsonl(tmp_path / "cut.jsonl") if r["inferred"]] == [0, 8]


def test_two_rates_at_once_are_refused_in_one_line(model, tmp_path):
    video = write_video(tmp_path / "in.avi", 2)
    result = cli(
        "webcam",
        "--model",
        str(model),
        "--source",
        str(video),
        "--infer-every",
        "2",
        "--infer-fps",
        "5",
        "--no-display",
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0] == "error: --infer-every and --infer-fps are two rates: give one"
