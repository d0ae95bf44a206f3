"""GStreamer sources: source URIs, the gst-launch child that writes BGR frames to a pipe, decoding an
H.264 file through GStreamer against OpenCV's FFmpeg path, a missing element as one error line,
and a live pipeline that dies and comes back.

Real gst-launch-1.0 processes with Debian's GStreamer (software elements only: videotestsrc,
x264enc, qtdemux, avdec_h264); NVIDIA's elements do not exist here, so their pipelines are only
checked as text and as the clean refusal a machine without them gives.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.decode_cost import encode_h264
from runtime import gst, gst_frames
from runtime.errors import RuntimeUserError
from runtime.sources import GstLiveSource, GstPipelineSource, VideoFileSource, open_source
from runtime.uri import csi_pipeline, file_pipeline, rtsp_pipeline, split_uri, v4l2_pipeline
from tests.runtime_fixtures import FRAME_H, FRAME_W, exported_model, read_all, read_jsonl, scene

REPO = Path(__file__).resolve().parents[1]
needs_gst = pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="GStreamer tools not installed")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )


def write_h264(path: Path, frames: int, fps: int = 10, size=(FRAME_W, FRAME_H)) -> Path:
    """``scene`` frames encoded by x264enc into an .mp4 (raw BGR piped into gst-launch)."""
    if not gst.element_exists("x264enc"):
        pytest.skip("x264enc (gstreamer1.0-plugins-ugly) not installed")
    frames_bgr = (scene(i, *size) for i in range(frames))
    return encode_h264(path, frames_bgr, size, fps, preset="ultrafast", key_int=10)


# ---- URIs as pipelines (text only: the Jetson elements cannot run here) -------------------------------
def test_csi_uri_options_become_nvargus_caps_and_flip():
    pipeline = csi_pipeline(split_uri("csi://1?width=1920&height=1080&fps=60&flip=2"))
    assert pipeline == (
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,"
        "framerate=60/1,format=NV12 ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx"
    )
    assert csi_pipeline(split_uri("csi://0")).count("width=1280,height=720,framerate=30/1") == 1


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("csi://0?width=wide", "width must be an integer"),
        ("csi://0?flip=9", "flip must be an integer from 0 to 7"),
        ("csi://0?fsp=30", "unknown option fsp"),
        ("csi://front", "csi://N"),
    ],
)
def test_bad_csi_options_are_one_line_naming_the_option(spec, problem):
    with pytest.raises(RuntimeUserError, match=problem):
        csi_pipeline(split_uri(spec))


def test_v4l2_uri_chooses_mjpg_with_jpegdec_or_yuyv():
    mjpg = v4l2_pipeline(split_uri("v4l2:///dev/video2?width=640&height=480&fps=30"))
    assert mjpg == "v4l2src device=/dev/video2 ! image/jpeg,width=640,height=480,framerate=30/1 ! jpegdec"
    yuyv = v4l2_pipeline(split_uri("v4l2:///dev/video0?format=yuyv"))
    assert yuyv == "v4l2src device=/dev/video0 ! video/x-raw,format=YUY2"
    with pytest.raises(RuntimeUserError, match="format must be one of mjpg, yuyv"):
        v4l2_pipeline(split_uri("v4l2:///dev/video0?format=h264"))


def test_rtsp_keeps_its_query_and_takes_options_from_the_fragment():
    uri = split_uri("rtsp://127.0.0.1:8554/cam?channel=2#codec=h265&latency=50")
    assert uri.target == "rtsp://127.0.0.1:8554/cam?channel=2"
    nvdec = rtsp_pipeline(uri, "nvdec", parser=True)
    assert nvdec == (
        "rtspsrc location='rtsp://127.0.0.1:8554/cam?channel=2' latency=50 ! rtph265depay ! "
        "h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"
    )
    cpu = rtsp_pipeline(split_uri("rtsp://127.0.0.1/live"), "cpu", parser=False)
    assert cpu.endswith("latency=200 ! rtph264depay ! avdec_h264")


def test_file_pipeline_quotes_the_path_and_picks_the_demuxer():
    pipeline = file_pipeline(Path("/videos/a b.mkv"), "h264", "cpu", parser=False)
    assert pipeline == "filesrc location='/videos/a b.mkv' ! matroskademux ! avdec_h264"
    assert (
        file_pipeline(Path("clip.h265"), "h265", "cpu", parser=True)
        == "filesrc location=clip.h265 ! h265parse ! avdec_h265"
    )


def test_caps_line_gives_size_and_rate():
    caps = gst_frames.parse_caps(
        "video/x-raw, format=(string)BGR, width=(int)1280, height=(int)720, "
        "interlace-mode=(string)progressive, framerate=(fraction)30000/1001"
    )
    assert (caps.width, caps.height, caps.format) == (1280, 720, "BGR")
    assert caps.fps == pytest.approx(29.97, abs=0.01)
    assert gst_frames.parse_caps("video/x-raw, width=(int)64, height=(int)48, framerate=(fraction)0/1").fps is None


def test_pipeline_elements_skip_caps_and_pad_references():
    text = "filesrc location=a.mp4 ! qtdemux name=d d.video_0 ! queue ! video/x-raw,format=I420 ! avdec_h264"
    assert gst.pipeline_elements(text) == ["filesrc", "qtdemux", "queue", "avdec_h264"]


# ---- frame layouts, and exact frames from short reads ------------------------------------------------
def _gst_frame(width: int, height: int, pixel_format: str, jpeg: bool) -> tuple[bytes, gst_frames.Caps]:
    """One SMPTE-bars frame as GStreamer lays out ``pixel_format`` (videoconvert from I420, or from
    jpegdec's full-range I420), with the caps the sink negotiated."""
    through_jpeg = ["jpegenc", "!", "jpegdec", "!"] if jpeg else []
    matrix = ",colorimetry=bt709" if height > 576 else ""  # the source's colours made as they are read back
    command = [
        "gst-launch-1.0",
        "-v",
        "videotestsrc",
        "num-buffers=1",
        "pattern=smpte",
        "!",
        f"video/x-raw,width={width},height={height},format=I420{matrix}",
        "!",
        *through_jpeg,
        "videoconvert",
        "!",
        f"video/x-raw,format={pixel_format}",
        "!",
        "fdsink",
        "fd=2",
        "name=out",
    ]
    result = subprocess.run(command, capture_output=True, check=True, timeout=30)
    caps_line = next(line for line in result.stdout.decode().splitlines() if "out.GstPad:sink: caps = " in line)
    return result.stderr, gst_frames.parse_caps(caps_line.split(" caps = ", 1)[1])


@needs_gst
@pytest.mark.parametrize(
    "width, height, jpeg", [(64, 48, False), (130, 10, False), (131, 11, False), (1280, 720, False), (322, 241, True)]
)
def test_frame_layouts_match_gstreamer_strides_and_give_bgr(width, height, jpeg):
    frames = {}
    for pixel_format in gst_frames.SINK_FORMATS:
        data, caps = _gst_frame(width, height, pixel_format, jpeg)
        layout = gst_frames.FrameLayout(pixel_format, width, height, caps.colorimetry)
        assert len(data) == layout.nbytes  # rows padded to 4 bytes: 130 BGR pixels take 392 bytes, not 390
        frames[pixel_format] = layout.to_bgr(np.frombuffer(data, np.uint8))
        assert frames[pixel_format].shape == (height, width, 3) and frames[pixel_format].flags.c_contiguous
    assert np.array_equal(frames["BGRx"], frames["BGR"])  # both videoconvert's: the same pixels
    # I420 converted here (by its range and matrix: BT.601 for SD, BT.709 for HD, full range after
    # jpegdec) against videoconvert's BGR: chroma edges are upsampled differently, colours agree
    assert np.abs(frames["I420"].astype(int) - frames["BGR"].astype(int)).mean() < 2.5
    white, yellow = frames["I420"][0, [0, width // 7 + 2]].tolist()
    if jpeg:  # jpegenc stores the limited-range Y = 235 of white as it is; JPEG is read as full range
        assert white == pytest.approx([235] * 3, abs=3)
    else:  # limited-range YUV expanded to 0-255
        assert white == pytest.approx([255] * 3, abs=3) and yellow == pytest.approx([0, 255, 255], abs=3)


def test_yuv_matrices_send_black_white_and_red_where_they_belong():
    for full_range, matrix in [(False, 4), (False, 3), (True, 4), (True, 3)]:
        kr, kb = {4: (0.299, 0.114), 3: (0.2126, 0.0722)}[matrix]  # BT.601, BT.709
        low, span, chroma_span = (0, 255, 255) if full_range else (16, 219, 224)
        red_cb, red_cr = -kr / (2 * (1 - kb)), 0.5  # pure red: Y = Kr, Cr at the top of its range
        red = [low + kr * span, 128 + red_cb * chroma_span, 128 + red_cr * chroma_span]
        yuv = np.array([[[low, 128, 128], [low + span, 128, 128], red]], np.float32)
        bgr = cv2.transform(yuv, gst_frames.yuv_to_bgr_matrix(full_range, matrix))
        assert bgr[0].tolist() == [
            pytest.approx([0, 0, 0], abs=0.5),
            pytest.approx([255, 255, 255], abs=0.5),
            pytest.approx([0, 0, 255], abs=0.5),
        ]


def _piped_process(width: int, height: int) -> tuple[gst.GstProcess, int]:
    process = gst.GstProcess("videotestsrc", live=False)
    process.layout = gst_frames.FrameLayout("BGR", width, height)
    read_fd, write_fd = os.pipe()
    process._frames_fd = read_fd
    return process, write_fd


def test_a_frame_is_reassembled_from_short_reads_and_a_partial_one_is_dropped():
    process, write_fd = _piped_process(40, 30)
    frames = list(np.random.default_rng(0).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8))
    payload = frames[0].tobytes() + frames[1].tobytes() + frames[1].tobytes()[:500]

    def trickle():  # 997-byte writes: every read returns less than a frame
        for start in range(0, len(payload), 997):
            os.write(write_fd, payload[start : start + 997])
        os.close(write_fd)

    writer = threading.Thread(target=trickle)
    writer.start()
    got = [process.read_frame(), process.read_frame(), process.read_frame()]
    writer.join()
    os.close(process._frames_fd)
    assert np.array_equal(got[0], frames[0]) and np.array_equal(got[1], frames[1])
    assert got[2] is None  # 500 bytes of a third frame, then the end


# ---- real gst-launch children ------------------------------------------------------------------------
@needs_gst
def test_videotestsrc_pipeline_reads_every_frame_with_its_caps():
    source = open_source(
        "gst://videotestsrc num-buffers=7 pattern=smpte ! video/x-raw,width=96,height=64,framerate=12/1"
    )
    try:
        assert isinstance(source, GstPipelineSource) and not source.live
        assert (source.width, source.height, source.fps) == (96, 64, 12.0)
        frames = list(source.frames())
    finally:
        source.close()
    assert [f.index for f in frames] == list(range(7))
    assert [f.timestamp for f in frames] == pytest.approx([i / 12 for i in range(7)])
    top_left = frames[0].image[0, : 2 * 96 // 7 + 1 : 96 // 7]  # the first SMPTE bars: white, then yellow
    assert top_left[0].tolist() == [255, 255, 255] and top_left[1].tolist() == [0, 255, 255]  # BGR


@needs_gst
def test_webcam_runs_a_gst_source_to_jsonl(tmp_path_factory, tmp_path):
    model = exported_model(tmp_path_factory)
    out = tmp_path / "out.jsonl"
    spec = "gst://videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width=160,height=120,framerate=15/1"
    result = _cli(
        "webcam", "--model", str(model), "--source", spec, "--no-display", "--jsonl", str(out), "--max-frames", "9"
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert [r["index"] for r in records] == list(range(9))
    assert [r["timestamp"] for r in records] == pytest.approx([i / 15 for i in range(9)], abs=1e-4)


@needs_gst
def test_missing_csi_element_is_one_error_line_exit_2(tmp_path_factory):
    if gst.element_exists("nvarguscamerasrc"):
        pytest.skip("this machine has nvarguscamerasrc")
    result = _cli(
        "webcam",
        "--model",
        str(exported_model(tmp_path_factory)),
        "--source",
        "csi://0",
        "--no-display",
        "--max-frames",
        "1",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            "error: csi://0: GStreamer element nvarguscamerasrc is not installed (it comes with NVIDIA JetPack, "
            "on a Jetson only)"
        )
    ]


@needs_gst
def test_unlinkable_pipeline_names_the_elements():
    with pytest.raises(RuntimeUserError, match="could not link videotestsrc0 to jpegdec0"):
        open_source("gst://videotestsrc ! video/x-raw,format=BGR ! jpegdec")


@needs_gst
def test_rtsp_through_gstreamer_that_cannot_connect_is_lost_naming_rtspsrc():
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = open_source(f"rtsp://127.0.0.1:{port}/cam#latency=0", reconnect=0, decoder="cpu")
    assert isinstance(source, GstLiveSource) and source.description == f"stream rtsp://127.0.0.1:{port}/cam"
    source.attach(threading.Event(), lambda kind, data: None)
    assert list(source.frames()) == [] and source.lost
    assert source.problem.startswith("GStreamer element rtspsrc0: Could not open resource")
    with pytest.raises(RuntimeUserError, match="codec must be one of h264, h265, got 'h266'"):
        open_source(f"rtsp://127.0.0.1:{port}/cam#codec=h266")  # checked even when OpenCV would read it


@needs_gst
def test_killed_live_pipeline_is_reconnected_with_offline_and_online_events():
    from runtime.events import SOURCE_OFFLINE, SOURCE_ONLINE
    from runtime.sources import ReconnectPolicy

    source = open_source("gst://videotestsrc is-live=true ! video/x-raw,width=32,height=24,framerate=30/1")
    events = []
    try:
        assert isinstance(source, GstLiveSource) and source.live
        source.policy = ReconnectPolicy(None, initial_s=0.05, cap_s=0.1)
        source.attach(threading.Event(), lambda kind, data: events.append(kind))
        frames = source.frames()
        before = [next(frames) for _ in range(3)]
        first_child = source.process.proc
        os.kill(first_child.pid, signal.SIGKILL)
        after = [next(frames) for _ in range(5)]  # reads past the death: a new child delivers
        assert first_child.wait(5) == -signal.SIGKILL
        assert source.process.proc.pid != first_child.pid and source.process.proc.poll() is None
        assert all(f.image.shape == (24, 32, 3) for f in before + after)
        assert [f.index for f in before + after] == list(range(8))
    finally:
        source.close()
    assert events == [SOURCE_OFFLINE, SOURCE_ONLINE] and source.outages == 1
    assert source.process is None


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


@needs_gst
def test_webcam_outlives_its_killed_gst_child_with_offline_and_online_events(tmp_path_factory, tmp_path):
    import psutil

    from runtime.sinks.jsonl import read_records

    out = tmp_path / "live.jsonl"
    command = [
        sys.executable,
        str(REPO / "cli.py"),
        "webcam",
        "--model",
        str(exported_model(tmp_path_factory)),
        "--source",
        "gst://videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=20/1",
        "--no-display",
        "--jsonl",
        str(out),
        "--max-frames",
        "40",
    ]
    run = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: out.exists() and len(read_records(out, "frames")) >= 5)
        children = [p for p in psutil.Process(run.pid).children() if p.name() == "gst-launch-1.0"]
        assert len(children) == 1
        children[0].kill()
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    events = [(e["event"], e.get("reason")) for e in read_records(out, "events")]
    # a slow first launch may add its own outage before the kill: the kill's is the one that names it
    killed = events.index(("source_offline", "stopped delivering frames"))
    assert events[killed + 1] == ("source_online", None)
    before = [event[0] for event in events[:killed]]  # outages that ended before the kill, if any
    assert before == ["source_offline", "source_online"] * (len(before) // 2)
    frames = read_records(out, "frames")
    assert len(frames) >= 30 and frames[-1]["index"] >= 39  # the run went on to its 40 frames
    assert "stopped delivering frames; reconnecting" in stderr


@needs_gst
def test_unreachable_camera_is_retried_then_given_up_with_gstreamers_reason(tmp_path):
    source = open_source(f"v4l2://{tmp_path}/video7?format=yuyv", reconnect=0)  # no such device
    assert isinstance(source, GstLiveSource) and not source.connected
    source.attach(threading.Event(), lambda kind, data: None)
    assert list(source.frames()) == [] and source.lost
    assert source.problem.startswith("GStreamer element v4l2src0: Cannot identify device")


@needs_gst
def test_connect_works_again_after_the_child_died():
    source = open_source("gst://videotestsrc is-live=true ! video/x-raw,width=16,height=8,framerate=30/1")
    try:
        source.process.proc.kill()
        while source._read() is not None:  # frames already in the pipe, then the end
            pass
        source._disconnect()
        source._connect()
        assert source._read().shape == (8, 16, 3)
        stop = threading.Event()
        stop.set()
        assert source.process.read_frame(gst.STALL_TIMEOUT_S, stop) is None  # a stopped run does not wait
    finally:
        source.close()


# ---- an H.264 file: GStreamer's avdec_h264 against OpenCV's FFmpeg ----------------------------------
@needs_gst
def test_h264_file_through_gstreamer_decodes_the_frames_opencv_decodes(tmp_path):
    video = write_h264(tmp_path / "clip.mp4", frames=12)
    source = open_source(f"file://{video}", decoder="cpu")
    try:
        assert isinstance(source, GstPipelineSource) and source.frame_count == 12
        assert (source.width, source.height, source.fps) == (FRAME_W, FRAME_H, 10.0)
        decoded = [f.image for f in source.frames()]
    finally:
        source.close()
    reference = read_all(video)
    assert len(decoded) == len(reference) == 12
    # one bitstream, two YUV->BGR conversions: a level or two apart at most
    worst = max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, reference))
    assert worst < 2.0
    assert isinstance(open_source(str(video), decoder="opencv"), VideoFileSource)
    assert isinstance(open_source(str(video)), VideoFileSource)  # auto, no hardware decoder here


@needs_gst
def test_webcam_labels_equal_through_gstreamer_and_opencv(tmp_path_factory, tmp_path):
    model = str(exported_model(tmp_path_factory))
    video = write_h264(tmp_path / "clip.mp4", frames=18)
    runs = {}
    for decoder in ("cpu", "opencv"):
        out = tmp_path / f"{decoder}.jsonl"
        result = _cli(
            "webcam",
            "--model",
            model,
            "--source",
            f"file://{video}",
            "--decoder",
            decoder,
            "--no-display",
            "--jsonl",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        runs[decoder] = read_jsonl(out)
    assert len(runs["cpu"]) == len(runs["opencv"]) == 18
    assert len({r["label"] for r in runs["opencv"]}) > 1  # the clip changes class: labels are informative
    assert [r["label"] for r in runs["cpu"]] == [r["label"] for r in runs["opencv"]]
    for ours, theirs in zip(runs["cpu"], runs["opencv"]):  # the two YUV->BGR conversions differ by ~2 levels
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=0.05)


@needs_gst
def test_cpu_decoder_refuses_a_codec_it_does_not_decode(tmp_path):
    from tests.runtime_fixtures import write_video

    video = write_video(tmp_path / "mpeg4.mp4", frames=3)  # mp4v
    with pytest.raises(RuntimeUserError, match=r"mpeg4.mp4: --decoder cpu decodes H.264/H.265 .* this is FMP4"):
        open_source(str(video), decoder="cpu")


# ---- doctor's camera section --------------------------------------------------------------------------
V4L2_CTL_SAMPLE = """ioctl: VIDIOC_ENUM_FMT
	Type: Video Capture

	[0]: 'MJPG' (Motion-JPEG, compressed)
		Size: Discrete 1280x720
			Interval: Discrete 0.033s (30.000 fps)
			Interval: Discrete 0.067s (15.000 fps)
		Size: Discrete 640x480
			Interval: Discrete 0.017s (60.000 fps)
	[1]: 'YUYV' (YUYV 4:2:2)
		Size: Discrete 640x480
			Interval: Discrete 0.033s (30.000 fps)
"""


def test_v4l2_formats_are_summarised_with_the_best_rate_per_size():
    from runtime.camera_check import summarise_formats

    assert summarise_formats(V4L2_CTL_SAMPLE) == "MJPG 1280x720@30 640x480@60 | YUYV 640x480@30"
    assert summarise_formats(V4L2_CTL_SAMPLE, sizes_per_format=1) == "MJPG 1280x720@30 (+1) | YUYV 640x480@30"


def test_video_devices_without_v4l2_ctl_are_listed_by_name(tmp_path, monkeypatch):
    from runtime import camera_check

    monkeypatch.setattr(camera_check.shutil, "which", lambda name: None)
    assert camera_check.device_items(tmp_path)[0] == ("v4l2 devices", "info", f"none ({tmp_path}/video* absent)")
    for name in ("video10", "video2"):
        (tmp_path / name).touch()
    items = camera_check.device_items(tmp_path)
    assert [i[0] for i in items] == [str(tmp_path / "video2"), str(tmp_path / "video10")]
    assert all("install v4l-utils" in i[2] for i in items)


@needs_gst
def test_camera_report_names_gstreamer_elements_and_opencv_build():
    import cv2

    from runtime.camera_check import camera_report

    class Recorder:
        def __init__(self):
            self.lines = []

        def add(self, name, status, detail):
            self.lines.append((name, status, detail))

    report = Recorder()
    camera_report(report)
    found = {name: (status, detail) for name, status, detail in report.lines}
    version = subprocess.run(
        ["gst-launch-1.0", "--version"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[1]
    assert found["gstreamer"] == ("ok", version)
    for element in ("v4l2src", "avdec_h264", "nvarguscamerasrc", "nvv4l2decoder"):
        exists = subprocess.run(["gst-inspect-1.0", "--exists", element], check=False).returncode == 0
        assert found[element][0] == ("ok" if exists else "skipped")
    opencv_gst = "YES" if re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) else "NO"
    assert f"GStreamer {opencv_gst}" in found["opencv video i/o"][1]
