"""The runtime's Python API and several streams through one model, on real videos and real ONNX
Runtime sessions. Cameras are the only fakes (none exists here): an OpenCV-like capture that
delivers frames and then goes dark."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import FakeCapture, exported_model, read_all, read_jsonl, scene, write_video

from runtime import Controls, Model, Pipeline, PipelineOptions
from runtime.backends import open_backend
from runtime.mosaic import Mosaic
from runtime.sources import VideoSource, open_source, stream_names

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory) -> Path:
    return exported_model(tmp_path_factory, batch=None)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def probabilities(record: dict, names) -> np.ndarray:
    return np.array([record["probabilities"][n] for n in names])


def test_files_of_different_lengths_and_sizes_each_get_every_frame(dynamic_model, tmp_path):
    videos = {
        "short": write_video(tmp_path / "short.avi", 5, size=(128, 96)),
        "wide": write_video(tmp_path / "wide.mp4", 14, size=(160, 96)),
        "tall": write_video(tmp_path / "tall.avi", 9, size=(96, 128)),
    }
    args = [a for v in videos.values() for a in ("--source", str(v))]
    result = cli(
        "webcam",
        "--model",
        str(dynamic_model),
        *args,
        "--save",
        str(tmp_path / "out-{stream}.mp4"),
        "--jsonl",
        str(tmp_path / "out-{stream}.jsonl"),
        "--no-display",
        "--batch-size",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "3 streams: 28 frames" in result.stderr

    with Model(dynamic_model, device="cpu") as model:
        for name, video in videos.items():
            frames_in = read_all(video)
            rows = read_jsonl(tmp_path / f"out-{name}.jsonl")
            assert [r["index"] for r in rows] == list(range(len(frames_in)))
            assert {r["stream"] for r in rows} == {name}
            single = [model.predict(frame) for frame in frames_in]  # one frame per call: no batching
            assert [r["label"] for r in rows] == [p.label for p in single]
            np.testing.assert_allclose(
                [probabilities(r, model.class_names) for r in rows], [p.probs for p in single], atol=1e-5
            )
            out = read_all(tmp_path / f"out-{name}.mp4")
            assert len(out) == len(frames_in) and out[0].shape == frames_in[0].shape


def test_frames_of_several_streams_share_inference_calls(dynamic_model, tmp_path):
    sources = [
        (name, open_source(str(write_video(tmp_path / f"{name}.avi", n))))
        for name, n in (("a", 12), ("b", 12), ("c", 6))
    ]
    with Model(dynamic_model, device="cpu") as model:
        pipeline = Pipeline(model, sources, PipelineOptions(display=False, progress=False, batch_timeout_ms=1000.0))
        stats = pipeline.run()
    assert [s.frames_out for s in stats] == [12, 12, 6]
    # files never wait for the timeout: a batch is full with one frame from every running stream
    assert pipeline.batches == 12
    assert [s.as_dict()["batch_size_mean"] for s in stats] == [2.5, 2.5, 3.0]


def test_a_batch_size_below_the_stream_count_still_serves_every_stream(dynamic_model, tmp_path):
    sources = [open_source(str(write_video(tmp_path / f"{i}.avi", 6))) for i in range(3)]
    with Model(dynamic_model, device="cpu") as model:
        pipeline = Pipeline(model, sources, PipelineOptions(display=False, progress=False, batch_size=2))
        stats = pipeline.run()
    assert [s.frames_out for s in stats] == [6, 6, 6] and pipeline.batches == 9


def test_a_camera_dying_mid_run_is_reconnected_while_the_files_run_on(dynamic_model, tmp_path):
    opened = []

    def opener(target):  # 6 frames; one reconnection gives 3 more; then the camera is gone
        camera = FakeCapture({0: 6, 1: 3}.get(len(opened), 0), delay=0.01, opened=len(opened) < 2)
        opened.append(camera)
        return camera

    camera = VideoSource(0, "camera 0", live=True, retries=2, retry_delay=0.0, opener=opener)
    file = open_source(str(write_video(tmp_path / "clip.avi", 40)))
    options = PipelineOptions(display=False, progress=False, jsonl=tmp_path / "{stream}.jsonl", batch_timeout_ms=5.0)
    with Model(dynamic_model, device="cpu") as model:
        cam_stats, file_stats = Pipeline(model, [("cam", camera), ("clip", file)], options).run()
    assert len(opened) == 1 + 1 + 2  # first open, one reconnection that worked, two that failed
    assert cam_stats.frames_read == 9 and cam_stats.frames_out + cam_stats.dropped == 9
    assert len(read_jsonl(tmp_path / "cam.jsonl")) == cam_stats.frames_out
    assert [r["index"] for r in read_jsonl(tmp_path / "clip.jsonl")] == list(range(40))


def test_a_slow_stream_does_not_hold_the_others_beyond_the_timeout(dynamic_model, tmp_path):
    camera = VideoSource(0, "camera 0", live=True, retries=0, opener=lambda _: FakeCapture(4, delay=0.4))
    file = open_source(str(write_video(tmp_path / "clip.avi", 30)))
    with Model(dynamic_model, device="cpu") as model:
        options = PipelineOptions(display=False, progress=False, batch_timeout_ms=10.0)
        _, file_stats = Pipeline(model, [camera, file], options).run()
    assert file_stats.frames_out == 30
    # with the camera 0.4 s between frames, almost every file frame leaves alone after 10 ms
    assert file_stats.as_dict()["batch_size_mean"] < 1.4


def test_fixed_batch_models_get_padded_batches(tmp_path_factory, dynamic_model, tmp_path):
    fixed = exported_model(tmp_path_factory, batch=2)
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    with open_backend(fixed, device="cpu") as backend, open_backend(dynamic_model, device="cpu") as reference:
        assert backend.fixed_batch == 2 and reference.fixed_batch is None
        got = backend.infer(x)  # 3 rows on a batch-2 model: 2, then 1 padded to 2
        expected = reference.infer(x)
        assert got["probs"].shape == (3, 6)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
        with pytest.raises(ValueError, match=r"N×3×64×64, got 3×3×32×32"):
            backend.infer(x[:, :, :32, :32].copy())

    videos = [write_video(tmp_path / f"{i}.avi", n) for i, n in enumerate((7, 4, 5))]
    with Model(fixed, device="cpu") as model:
        pipeline = Pipeline(
            model,
            [open_source(str(v)) for v in videos],
            PipelineOptions(display=False, progress=False, jsonl=tmp_path / "{stream}.jsonl"),
        )
        pipeline.run()
        for stream, video in zip(pipeline.streams, videos):
            rows = read_jsonl(tmp_path / f"{stream.name}.jsonl")
            singles = [model.predict(frame) for frame in read_all(video)]
            assert [r["label"] for r in rows] == [p.label for p in singles]
            np.testing.assert_allclose(
                [probabilities(r, model.class_names) for r in rows], [p.probs for p in singles], atol=1e-5
            )


def test_api_predict_agrees_with_the_webcam_jsonl(dynamic_model, tmp_path):
    video = write_video(tmp_path / "clip.avi", 10, size=(160, 120))
    result = cli(
        "webcam",
        "--model",
        str(dynamic_model),
        "--source",
        str(video),
        "--jsonl",
        str(tmp_path / "f.jsonl"),
        "--no-display",
    )
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(tmp_path / "f.jsonl")
    frames = read_all(video)
    cv2.imwrite(str(tmp_path / "first.png"), frames[0])
    with Model(dynamic_model, device="cpu") as model:
        predictions = model.predict_batch(frames)
        from_path = model.predict(tmp_path / "first.png")
    assert len(rows) == len(predictions) == 10
    for row, p in zip(rows, predictions):
        record = p.to_dict()
        assert set(record) == set(row) and record["label"] == row["label"]
        assert record["probabilities"] == pytest.approx(row["probabilities"], abs=1e-5)
    np.testing.assert_allclose(from_path.probs, predictions[0].probs, atol=1e-6)  # PNG is lossless


def test_prediction_fields(dynamic_model):
    frame = scene(4, 160, 120)
    with Model(dynamic_model, device="cpu") as model:
        p = model.predict(frame)
        cropped = Model.from_backend(model.backend, resize="crop").predict(frame)
    assert p.score == pytest.approx(max(p.probs)) and p.label == p.top(1)[0][0]
    top = p.top(3)
    assert len(top) == 3 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert p.probs.sum() == pytest.approx(1.0, abs=1e-5) and p.det_scores.shape == (6,)
    assert p.timings["inference_ms"] > 0 and p.timings["end_to_end_ms"] >= p.timings["inference_ms"]
    # the map covers the frame; the model's own geometry shows all of it; a centre crop only the middle 120×120
    assert p.sentiment_map.shape == (120, 160) and not np.isnan(p.sentiment_map).any()
    assert p.sentiment_map.min() == pytest.approx(0, abs=1e-6) and p.sentiment_map.max() == pytest.approx(1)
    smap = cropped.sentiment_map
    assert smap.shape == (120, 160)
    assert np.isnan(smap[:, :20]).all() and np.isnan(smap[:, 140:]).all() and not np.isnan(smap[:, 20:140]).any()
    before = frame.copy()
    drawn = p.plot(frame)
    assert np.array_equal(frame, before) and np.abs(drawn.astype(int) - frame).mean() > 10


def test_bad_inputs_to_predict_are_named(dynamic_model, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with Model(dynamic_model, device="cpu") as model:
        from runtime.errors import RuntimeUserError

        with pytest.raises(RuntimeUserError, match="junk.png: not an image"):
            model.predict(tmp_path / "junk.png")
        with pytest.raises(ValueError, match="BGR uint8"):
            model.predict(np.zeros((8, 8), np.uint8))


def test_stream_yields_every_frame_and_stops_cleanly_when_left(dynamic_model, tmp_path):
    video = write_video(tmp_path / "clip.avi", 12)
    frames = read_all(video)
    threads_before = threading.active_count()
    with Model(dynamic_model, device="cpu") as model:
        got = list(model.stream(str(video)))
        assert [p.index for _, p in got] == list(range(12))
        assert all(np.array_equal(f, g) for f, (g, _) in zip(frames, got))  # the frames, not drawn on
        for i, (frame, p) in enumerate(model.stream(str(video))):
            if i == 3:
                break  # leaving early stops the pipeline's threads
    time.sleep(0.2)
    assert threading.active_count() == threads_before


def test_sinks_and_controls_plug_in_per_stream(dynamic_model, tmp_path):
    video = write_video(tmp_path / "clip.avi", 6, size=(160, 120))

    class Collect:
        def __init__(self):
            self.frames, self.records, self.closed = [], [], False

        def write(self, frame, prediction):
            self.frames.append(frame.copy())
            self.records.append(prediction.to_dict())

        def close(self):
            self.closed = True

    with Model(dynamic_model, device="cpu") as model:
        pipeline = Pipeline(
            model,
            [open_source(str(video)), open_source(str(video))],
            PipelineOptions(display=False, progress=False, mosaic=True),
        )
        plain, mapped = Collect(), Collect()
        pipeline.streams[0].sinks.append(plain)
        pipeline.streams[0].controls = Controls(map=False)
        pipeline.streams[1].sinks.append(mapped)
        pipeline.run()
    src = read_all(video)
    assert plain.closed and mapped.closed and len(plain.records) == len(mapped.records) == 6
    assert [r["label"] for r in plain.records] == [r["label"] for r in mapped.records]
    body = (slice(66, 96), slice(0, 160))  # below the label box, above the readout
    assert np.abs(plain.frames[3][body].astype(int) - src[3][body]).mean() < 1
    assert np.abs(mapped.frames[3][body].astype(int) - src[3][body]).mean() > 10
    assert pipeline.mosaic.image().shape == (120, 320, 3)  # two 160×120 tiles side by side


def test_mosaic_places_tiles_in_a_grid():
    mosaic = Mosaic([(40, 30)] * 3, max_width=80)  # 2 columns of 40×30 tiles
    for i, value in enumerate((50, 100, 150)):
        mosaic.put(i, np.full((30, 40, 3), value, np.uint8))
    image = mosaic.image()
    assert image.shape == (60, 80, 3)
    assert image[15, 20, 0] == 50 and image[15, 60, 0] == 100 and image[45, 20, 0] == 150
    assert image[45, 60, 0] == 0  # the fourth tile is empty
    tall = Mosaic([(40, 30), (30, 40)], max_width=80)  # tiles fit the tallest frame, aspect kept
    assert tall.tile == (40, 53)
    tall.put(0, np.full((30, 40, 3), 7, np.uint8))  # fits as it is, centred: bars above and below
    tall.put(1, np.full((40, 30, 3), 9, np.uint8))  # scaled by 1.325 to 40×53
    image = tall.image()
    assert (image[:, :40, 0] == 7).sum() == 30 * 40 and image[0, 20, 0] == 0 and image[11, 20, 0] == 7
    assert (image[:, 40:, 0] == 9).all()


def test_stream_names_are_unique_and_safe():
    assert stream_names(["0", "a/clip.mp4", "b/clip.mp4", "rtsp://cam:554/live?x=1", "imgs/"]) == [
        "camera0",
        "clip",
        "clip-2",
        "cam-554-live-x-1",
        "imgs",
    ]


def test_unopenable_source_is_one_line_unless_keep_going(dynamic_model, tmp_path):
    video = write_video(tmp_path / "ok.avi", 4)
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# cameras of the hall\n{video}\n\n{tmp_path / 'missing.mp4'}\n")
    result = cli(
        "webcam",
        "--model",
        str(dynamic_model),
        "--sources",
        str(listing),
        "--no-display",
        "--jsonl",
        str(tmp_path / "{stream}.jsonl"),
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.mp4: no such file" in lines[0]
    assert not (tmp_path / "ok.jsonl").exists()

    result = cli(
        "webcam",
        "--model",
        str(dynamic_model),
        "--sources",
        str(listing),
        "--no-display",
        "--jsonl",
        str(tmp_path / "{stream}.jsonl"),
        "--keep-going",
    )
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "missing.mp4" in result.stderr
    assert len(read_jsonl(tmp_path / "ok.jsonl")) == 4


def test_several_streams_need_the_stream_field_in_output_names(dynamic_model, tmp_path):
    video = write_video(tmp_path / "in.avi", 2)
    result = cli(
        "webcam",
        "--model",
        str(dynamic_model),
        "--source",
        str(video),
        "--source",
        str(video),
        "--save",
        str(tmp_path / "out.mp4"),
        "--no-display",
    )
    assert result.returncode == 2 and "needs {stream} in its name" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob(".out*"))


def test_a_paced_file_delivers_frames_on_time_after_its_delay(tmp_path):
    from benchmarks.multistream import PacedSource

    video = write_video(tmp_path / "clip.avi", frames=6)
    source = PacedSource(video, fps=20.0, seconds=0.2, delay=0.3)  # 4 frames, 50 ms apart, 0.3 s late
    asked = time.perf_counter()
    walls = [frame.captured for frame in source.frames()]
    source.close()
    assert len(walls) == 4 and walls[0] - asked >= 0.3
    assert all(b - a >= 0.045 for a, b in zip(walls, walls[1:]))
