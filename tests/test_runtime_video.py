"""End to end on real video files written by OpenCV: the webcam command, its files and its faults."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from runtime_fixtures import FakeCapture, exported_model, read_all, read_jsonl, scene, write_video

from runtime.backends import open_backend
from runtime.errors import RuntimeUserError
from runtime.metadata import ModelMetadata
from runtime.pipeline import Pipeline, PipelineOptions, run_pipeline
from runtime.preprocess import frame_to_tensor
from runtime.sources import open_source
from runtime.video import run_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return exported_model(tmp_path_factory)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_every_frame_in_order_with_labels_equal_to_the_models(model, tmp_path):
    video = write_video(tmp_path / "in.mp4", frames=24, fps=12.0)
    out, records = tmp_path / "out.mp4", tmp_path / "frames.jsonl"
    result = cli(
        "webcam",
        "--model",
        str(model),
        "--source",
        str(video),
        "--save",
        str(out),
        "--jsonl",
        str(records),
        "--no-display",
    )
    assert result.returncode == 0, result.stderr

    frames_in = read_all(video)
    rows = read_jsonl(records)
    assert len(frames_in) == 24
    assert [r["index"] for r in rows] == list(range(24))
    assert [r["timestamp"] for r in rows] == pytest.approx([i / 12.0 for i in range(24)], abs=1e-3)

    # the oracle: the same decoded frames, one at a time under the model's own contract (the
    # frame → tensor function is tested on known pixels in test_runtime_frames), through a bare ORT session
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, model)
    names = list(meta.class_names)
    views = [meta.contract.with_geometry(view) for view in meta.contract.views]  # probabilities: mean over views
    expected = [
        np.mean([session.run(["probs"], {"image": frame_to_tensor(f, v)[None]})[0][0] for v in views], axis=0)
        for f in frames_in
    ]
    assert [r["label"] for r in rows] == [names[int(np.argmax(p))] for p in expected]
    got = np.array([[r["probabilities"][n] for n in names] for r in rows])
    np.testing.assert_allclose(got, np.array(expected), atol=2e-5)
    assert len({r["label"] for r in rows}) >= 2, "the scene changes class: labels should too"
    assert all(r["inference_ms"] > 0 and r["end_to_end_ms"] >= r["inference_ms"] for r in rows)

    capture = cv2.VideoCapture(str(out))
    assert capture.isOpened()
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (128, 96)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    frames_out = read_all(out)
    assert len(frames_out) == 24
    # the overlay is drawn: output frames differ from input frames well beyond codec noise
    diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames_in, frames_out)])
    assert diff > 10


def test_smoothing_and_opacity_change_the_overlay_only(model, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=12, size=(320, 240))
    plain, smooth = tmp_path / "plain.jsonl", tmp_path / "smooth.jsonl"
    run_video(model, str(video), jsonl=plain, display=False, progress=False, opacity=0.0, save=tmp_path / "a0.avi")
    run_video(
        model,
        str(video),
        jsonl=smooth,
        display=False,
        progress=False,
        smooth=0.9,
        opacity=0.45,
        save=tmp_path / "a45.avi",
    )
    strip = lambda rows: [(r["label"], r["probabilities"]) for r in rows]  # noqa: E731
    assert strip(read_jsonl(plain)) == strip(read_jsonl(smooth))  # records are the raw predictions
    no_map, with_map = read_all(tmp_path / "a0.avi"), read_all(tmp_path / "a45.avi")
    src = read_all(video)
    # away from the text boxes (top-left labels, bottom readout) opacity 0 leaves the picture alone
    body = (slice(80, 200), slice(0, 320))
    untouched = np.abs(no_map[5][body].astype(int) - src[5][body].astype(int)).mean()
    blended = np.abs(with_map[5][body].astype(int) - src[5][body].astype(int)).mean()
    assert untouched < 4 and blended > 15


def test_image_folder_skips_and_counts_a_corrupt_image(model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:02d}.png"), scene(i))
    (folder / "02.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    stats = run_video(
        model, str(folder), jsonl=tmp_path / "f.jsonl", save=tmp_path / "f.mp4", display=False, progress=False
    )
    assert (stats.frames_out, stats.corrupt) == (4, 1)
    assert [r["index"] for r in read_jsonl(tmp_path / "f.jsonl")] == [0, 1, 3, 4]
    assert len(read_all(tmp_path / "f.mp4")) == 4


def test_single_image_source(model, tmp_path):
    image = tmp_path / "one.jpg"
    cv2.imwrite(str(image), scene(7, 100, 140))  # portrait: letterbox bars left and right
    stats = run_video(model, str(image), jsonl=tmp_path / "one.jsonl", display=False, progress=False)
    rows = read_jsonl(tmp_path / "one.jsonl")
    assert stats.frames_out == 1 and len(rows) == 1 and rows[0]["index"] == 0


@pytest.mark.parametrize(
    "source, message, code",
    [
        ("missing.mp4", "no such file, folder, camera index or stream URL", 2),
        ("notavideo.mp4", "not a video OpenCV can decode", 2),
        # a live source that is down is retried (for ever by default); --reconnect 0 gives it up at once: exit 4
        ("97", "camera 97: no such camera", 4),
        ("http://127.0.0.1:9/none.mp4", "stream http://127.0.0.1:9/none.mp4: cannot connect", 4),
    ],
)
def test_bad_source_is_one_line_and_its_exit_code(model, tmp_path, source, message, code):
    (tmp_path / "notavideo.mp4").write_bytes(os.urandom(4096))
    target = source if source.isdigit() or "://" in source else str(tmp_path / source)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older result that must survive")
    # --device cpu: a live source is found down only once the model is loaded, and --device auto's
    # line naming its pick would come first
    result = cli(
        "webcam",
        "--model",
        str(model),
        "--device",
        "cpu",
        "--source",
        target,
        "--save",
        str(out),
        "--no-display",
        "--reconnect",
        "0",
    )
    assert result.returncode == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert out.read_bytes() == b"an older result that must survive"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left behind"


def test_bad_model_is_one_line_and_exit_code_2(tmp_path):
    video = write_video(tmp_path / "in.avi", frames=2)
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a protobuf")
    for model, message in ((bogus, "ONNX Runtime cannot load this model"), (tmp_path / "no.onnx", "not found")):
        result = cli("webcam", "--model", str(model), "--source", str(video), "--no-display")
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr


def test_truncated_file_ends_cleanly_with_what_could_be_read(model, tmp_path):
    video = write_video(tmp_path / "full.avi", frames=30)
    data = video.read_bytes()
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    readable = len(read_all(truncated))
    assert 0 < readable < 30
    result = cli(
        "webcam",
        "--model",
        str(model),
        "--source",
        str(truncated),
        "--save",
        str(tmp_path / "o.mp4"),
        "--jsonl",
        str(tmp_path / "o.jsonl"),
        "--no-display",
    )
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(tmp_path / "o.jsonl")) == readable
    assert len(read_all(tmp_path / "o.mp4")) == readable
    assert f"{30 - readable} unread" in result.stderr  # the summary says frames were missing


def test_truncated_mp4_without_index_cannot_be_opened(model, tmp_path):
    video = write_video(tmp_path / "full.mp4", frames=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[:3000])  # mp4v keeps its index (moov) at the end
    result = cli("webcam", "--model", str(model), "--source", str(cut), "--no-display")
    assert result.returncode == 2 and "not a video OpenCV can decode" in result.stderr


def test_ctrl_c_leaves_a_playable_video_and_a_complete_jsonl(model, tmp_path):
    video = write_video(tmp_path / "long.avi", frames=1500, fps=30.0)
    out, records = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "cli.py",
            "webcam",
            "--model",
            str(model),
            "--source",
            str(video),
            "--save",
            str(out),
            "--jsonl",
            str(records),
            "--no-display",
            "--threads",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    partial = []
    while time.monotonic() < deadline and proc.poll() is None:  # wait until frames are being written
        partial = [p for p in (records,) if p.exists() and p.stat().st_size > 2000]  # written where it ends
        if partial:
            break
        time.sleep(0.05)
    assert partial and proc.poll() is None, "the run should still be going"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "interrupted" in stderr
    rows = read_jsonl(records)  # every line parses: nothing cut in half
    frames = read_all(out)
    assert 0 < len(rows) < 1500
    assert len(frames) == len(rows)
    assert [r["index"] for r in rows] == list(range(len(rows)))
    assert not list(tmp_path.glob(".out.*")), "temporary files were moved into place"


def test_runtime_never_loads_torch(model, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=4)
    # --device cpu: auto would also probe OpenVINO, which reads a fused file through onnx (its extra)
    code = f"""
import runpy, sys
sys.argv = ["cli.py", "webcam", "--model", {str(model)!r}, "--device", "cpu", "--source", {str(video)!r},
            "--save", {str(tmp_path / "o.mp4")!r}, "--jsonl", {str(tmp_path / "o.jsonl")!r}, "--no-display"]
try:
    runpy.run_path("cli.py", run_name="__main__")
except SystemExit as exit:
    assert not exit.code, exit.code
# cli.py itself imports every package's light commands module; nothing heavy may come with them
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript"))
print("HEAVY", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 4

    # and the runtime package on its own imports neither torch nor wscnet
    code = (
        "import sys, runtime.video, runtime.backends.onnxruntime_backend, runtime.backends.tensorrt_backend, "
        "runtime.commands; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'wscnet', 'export')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_camera_disconnect_is_retried_then_the_run_ends_cleanly(model, tmp_path):
    from runtime.sources import VideoSource

    opened = []

    def opener(target):
        # first open: a camera that works for 6 frames; one reconnection gives 3 more; then none
        capture = FakeCapture({0: 6, 1: 3}.get(len(opened), 0))
        capture.opened = len(opened) < 2
        opened.append(capture)
        return capture

    source = VideoSource(0, "camera 0", live=True, retries=3, retry_delay=0.0, opener=opener)
    with open_backend(model, device="cpu") as backend:
        stats = run_pipeline(
            backend, source, PipelineOptions(jsonl=tmp_path / "cam.jsonl", display=False, progress=False)
        )
    # the first open; one reconnection that worked (the count starts again after good frames);
    # then three failed attempts
    assert len(opened) == 1 + 1 + 3
    rows = read_jsonl(tmp_path / "cam.jsonl")
    assert stats.frames_read == 9 and stats.frames_out + stats.dropped == 9 and len(rows) == stats.frames_out


def test_live_source_drops_stale_frames_and_keeps_the_newest(model, tmp_path):
    """A camera faster than the model: only some frames are inferred, none waits for inference."""
    from runtime.sources import VideoSource

    class SlowBackend:
        def __init__(self, inner):
            self.inner, self.metadata, self.description = inner, inner.metadata, "slow"

        def infer(self, batch):
            time.sleep(0.03)
            return self.inner.infer(batch)

    source = VideoSource(0, "camera 0", live=True, retries=0, opener=lambda _: FakeCapture(60, delay=0.002))
    options = PipelineOptions(jsonl=tmp_path / "live.jsonl", display=False, progress=False, queue_size=2)
    with open_backend(model, device="cpu") as backend:
        pipeline = Pipeline(SlowBackend(backend), source, options)
        [stats] = pipeline.run()
    assert pipeline.streams[0].pool.qsize() == options.queue_size + 2  # every buffer came back: nothing piles up
    rows = read_jsonl(tmp_path / "live.jsonl")
    # the scheduler infers what the model keeps up with; the other frames are drawn with the newest
    # prediction (or dropped when even drawing falls behind), never queued
    assert stats.frames_read == 60 and stats.inferred < 20 < stats.frames_out
    assert stats.frames_out + stats.dropped == 60 and len(rows) == stats.frames_out
    assert sum(r["inferred"] for r in rows) == stats.inferred and rows[0]["inferred"]
    indices = [r["index"] for r in rows]
    assert indices == sorted(indices)  # in order
    # the camera's last frame is shown, unless drawing fell behind the camera (a loaded machine)
    assert indices[-1] == 59 or stats.dropped > 0


def test_file_source_is_never_dropped_even_with_a_slow_model(model, tmp_path):
    class SlowBackend:
        def __init__(self, inner):
            self.inner, self.metadata, self.description = inner, inner.metadata, "slow"

        def infer(self, batch):
            time.sleep(0.01)
            return self.inner.infer(batch)

    video = write_video(tmp_path / "in.avi", frames=20)
    with open_backend(model, device="cpu") as backend:
        stats = run_pipeline(
            SlowBackend(backend),
            open_source(str(video)),
            PipelineOptions(jsonl=tmp_path / "f.jsonl", display=False, progress=False),
        )
    assert stats.dropped == 0 and stats.frames_out == 20
    assert [r["index"] for r in read_jsonl(tmp_path / "f.jsonl")] == list(range(20))


def test_unwritable_save_path_is_a_user_error(model, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=2)
    with pytest.raises(RuntimeUserError, match="unsupported video type"):
        run_video(model, str(video), save=tmp_path / "out.gif", display=False, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RuntimeUserError, match="cannot write here"):
        run_video(model, str(video), save=blocker / "out.mp4", display=False, progress=False)
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeUserError, match="cannot write here"):
        run_video(model, str(video), save=out, jsonl=blocker / "f.jsonl", display=False, progress=False)
    assert out.read_bytes() == b"previous result"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
