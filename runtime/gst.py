"""GStreamer sources without a GStreamer-enabled OpenCV: frames from a ``gst-launch-1.0`` child.

The PyPI OpenCV is built without GStreamer, and PyGObject is not in the runtime's Python, so a
pipeline runs as a ``gst-launch-1.0 -v`` subprocess ending in ``videoconvert ! video/x-raw,format=
{BGR,BGRx,I420} ! fdsink`` that writes raw frames to a pipe of its own (not stdout: ``-v`` prints
there). The size, rate and format come from the caps the sink negotiated, which ``-v`` prints; each
frame is then exactly the bytes GStreamer's layout of that format takes, turned into BGR by
``runtime.gst_frames``. A pipeline that cannot start is one line naming the element that failed.

``plan_gstreamer`` says how a spec runs through GStreamer: ``csi://``, ``v4l2://`` and ``gst://``
always; ``rtsp://`` and video files when ``--decoder`` asks for it (``runtime.uri``). The sources
that read a ``GstProcess`` are in ``runtime.sources``: ``GstLiveSource`` (cameras, streams,
reconnected as every ``LiveSource``) and ``GstPipelineSource`` (a file or a finite pipeline, read
to its end, every frame in order).
"""

import logging
import os
import re
import select
import shlex
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: pipes keep their default size
    fcntl = None  # type: ignore[assignment]

from .errors import RuntimeUserError
from .gst_frames import SINK_FORMATS, Caps, FrameLayout, parse_caps
from .uri import (
    SourceURI,
    csi_pipeline,
    file_codec,
    file_pipeline,
    rtsp_codec,
    rtsp_pipeline,
    scheme_of,
    split_uri,
    v4l2_pipeline,
)

log = logging.getLogger("runtime")

LAUNCH = "gst-launch-1.0"
INSPECT = "gst-inspect-1.0"
SINK = "wscnet_frames"  # the name of the fdsink whose negotiated caps give the frame size
START_TIMEOUT_S = 20.0  # a CSI camera or an RTSP handshake takes seconds
STALL_TIMEOUT_S = 10.0  # a live pipeline silent this long is lost
STOP_POLL_S = 0.5  # how often a blocked read looks at the pipeline's stop flag
LIVE_ELEMENTS = (
    "nvarguscamerasrc",
    "nvv4l2camerasrc",
    "v4l2src",
    "libcamerasrc",
    "rtspsrc",
    "udpsrc",
    "tcpclientsrc",
    "souphttpsrc",
    "srtsrc",
    "ximagesrc",
)
LEAKY_QUEUE = "queue max-size-buffers=1 leaky=downstream"  # a live source's newest frame wins
JETPACK = "NVIDIA JetPack, on a Jetson only"
# where a missing element comes from, for the error line
ELEMENT_PACKAGES = {
    "nvarguscamerasrc": JETPACK,
    "nvvidconv": JETPACK,
    "nvv4l2decoder": JETPACK,
    "avdec_h264": "gstreamer1.0-libav",
    "avdec_h265": "gstreamer1.0-libav",
    "h264parse": "gstreamer1.0-plugins-bad",
    "h265parse": "gstreamer1.0-plugins-bad",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "v4l2src": "gstreamer1.0-plugins-good",
    "jpegdec": "gstreamer1.0-plugins-good",
    "rtspsrc": "gstreamer1.0-plugins-good",
    "qtdemux": "gstreamer1.0-plugins-good",
    "matroskademux": "gstreamer1.0-plugins-good",
    "avidemux": "gstreamer1.0-plugins-good",
    "videoconvert": "gstreamer1.0-plugins-base",
}
CAPS_LINE = re.compile(rf"{SINK}\.GstPad:sink: caps = (.*)$")
NO_ELEMENT = re.compile(r'no element "([^"]+)"')
ELEMENT_ERROR = re.compile(r"ERROR: from element /[^ ]*?([A-Za-z0-9_-]+): (.*)$")


class LaunchFailed(Exception):
    """The pipeline did not reach its first frame; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


# ---- what this machine has -------------------------------------------------------------------------
@cache
def gstreamer_version() -> str | None:
    """``GStreamer 1.22.0`` from ``gst-launch-1.0 --version``, or None without GStreamer's tools."""
    if shutil.which(LAUNCH) is None:
        return None
    result = subprocess.run([LAUNCH, "--version"], check=False, capture_output=True, text=True, timeout=10)
    lines = [line for line in result.stdout.splitlines() if line.startswith("GStreamer ")]
    return lines[0] if lines else "unknown version"


@cache
def element_exists(name: str) -> bool:
    """``gst-inspect-1.0 --exists NAME``: False also when GStreamer's tools are missing."""
    if shutil.which(INSPECT) is None:
        return False
    return subprocess.run([INSPECT, "--exists", name], check=False, capture_output=True, timeout=30).returncode == 0


def pipeline_elements(pipeline: str) -> list[str]:
    """The element names a gst-launch description uses (caps, pad references and bins skipped)."""
    names = []
    for segment in pipeline.split("!"):
        words = segment.strip().split()
        if words and re.fullmatch(r"[a-z][a-z0-9_-]*", words[0]):
            names.append(words[0])
    return names


def require_elements(spec: str, pipeline: str) -> None:
    """One line naming the first element this machine lacks (and the package that brings it)."""
    if shutil.which(LAUNCH) is None:
        raise RuntimeUserError(
            f"{spec}: GStreamer is not installed ({LAUNCH} not found; apt install "
            "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)"
        )
    for name in pipeline_elements(pipeline):
        if not element_exists(name):
            raise RuntimeUserError(f"{spec}: {not_installed(name)}")


def not_installed(element: str) -> str:
    origin = ELEMENT_PACKAGES.get(element)
    return f"GStreamer element {element} is not installed" + (f" (it comes with {origin})" if origin else "")


# ---- the gst-launch child --------------------------------------------------------------------------
def launch_failure(lines: list[str], returncode: int | None) -> LaunchFailed:
    """What gst-launch said when the pipeline failed, as one line naming the element."""
    text = "\n".join(lines)
    missing = NO_ELEMENT.search(text)
    if missing:
        return LaunchFailed(not_installed(missing[1]), permanent=True)
    for line in lines:
        if "erroneous pipeline" in line:
            return LaunchFailed(
                "GStreamer cannot build the pipeline: " + line.split("erroneous pipeline:", 1)[1].strip(),
                permanent=True,
            )
    errors = [(i, m) for i, m in enumerate(map(ELEMENT_ERROR.search, lines)) if m]
    if any("not-linked" in line for line in lines):
        return LaunchFailed(
            "the stream's format does not fit the pipeline (not-linked"
            + (f" after {errors[0][1][1]}" if errors else "")
            + "; an H.265 stream needs #codec=h265)",
            permanent=True,
        )
    if errors:
        index, error = errors[0]
        return LaunchFailed(
            f"GStreamer element {error[1]}: {error[2].strip()}{_debug_detail(lines, index)}", permanent=False
        )
    last = next((line for line in reversed(lines) if line.strip()), f"exit code {returncode}")
    return LaunchFailed(f"GStreamer pipeline failed: {last.strip()}", permanent=False)


def _debug_detail(lines: list[str], error_index: int) -> str:
    """The plain-words line of gst-launch's "Additional debug info" after an ERROR (``No such file …``)."""
    following = lines[error_index + 1 : error_index + 4]
    if len(following) == 3 and following[0].startswith("Additional debug info") and following[2].strip():
        return f" ({following[2].strip()})"
    return ""


class GstProcess:
    """One ``gst-launch-1.0 -v`` child: raw frames on a pipe of their own, its messages read by a thread."""

    def __init__(self, pipeline: str, live: bool) -> None:
        self.pipeline = pipeline
        self.live = live
        self.caps: Caps | None = None
        self.layout: FrameLayout | None = None
        self.lines: deque[str] = deque(maxlen=60)
        self._settled = threading.Event()  # caps seen, or the child's output ended
        self._reader: threading.Thread | None = None
        self._frames_fd = -1
        self.proc: subprocess.Popen | None = None

    def command(self, write_fd: int) -> list[str]:
        """gst-launch's arguments: the pipeline split as a shell would (gst-launch keeps each argument
        one token, so a quoted file name with spaces stays whole), then the converter and the sink."""
        tail = f"{LEAKY_QUEUE} ! " if self.live else ""
        formats = ",".join(SINK_FORMATS)
        sink = f"videoconvert ! video/x-raw,format={{{formats}}} ! {tail}fdsink fd={write_fd} sync=false name={SINK}"
        try:
            words = shlex.split(self.pipeline)
        except ValueError as exc:
            raise LaunchFailed(f"cannot read the pipeline: {exc}", permanent=True) from None
        return [LAUNCH, "-v", *words, "!", *sink.split()]

    def start(self, timeout: float = START_TIMEOUT_S) -> Caps:
        """Launch and wait for the sink's caps; LaunchFailed when the pipeline does not get there."""
        self.command(0)  # an unreadable pipeline fails before anything starts
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                self.command(write_fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            raise LaunchFailed(f"cannot run {LAUNCH}: {exc.strerror or exc}", permanent=True) from None
        finally:
            os.close(write_fd)
        self._frames_fd = read_fd
        self._reader = threading.Thread(target=self._read_messages, name="gst-messages", daemon=True)
        self._reader.start()
        if not self._settled.wait(timeout) or self.caps is None:
            failure = self._failure(timeout)
            self.stop()
            raise failure
        if self.caps.format not in SINK_FORMATS:
            self.stop()
            raise LaunchFailed(
                f"GStreamer negotiated {self.caps.format or 'no'} format, not one of {', '.join(SINK_FORMATS)}",
                permanent=True,
            )
        self.layout = FrameLayout(self.caps.format, self.caps.width, self.caps.height, self.caps.colorimetry)
        _widen_pipe(read_fd, self.layout.nbytes)
        return self.caps

    def _failure(self, timeout: float) -> LaunchFailed:
        if self.proc is not None and self.proc.poll() is None and not self._settled.is_set():
            return LaunchFailed(f"no frame within {timeout:.0f} s", permanent=False)
        if self._reader is not None:
            self._reader.join(2.0)
        return launch_failure(list(self.lines), self.proc.poll() if self.proc else None)

    def _read_messages(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            match = CAPS_LINE.search(line)
            caps = parse_caps(match[1]) if match and self.caps is None else None
            if caps is not None:
                self.caps = caps
                self._settled.set()
        self._settled.set()

    def read_frame(self, stall_timeout: float | None = None, stop: threading.Event | None = None) -> np.ndarray | None:
        """The next H×W×3 BGR frame; None at the end of the stream (a partial frame is dropped), or,
        with ``stall_timeout``, when no byte came for that long, or once ``stop`` is set."""
        assert self.layout is not None
        size = self.layout.nbytes
        data = np.empty(size, np.uint8)
        view = memoryview(data)
        got = 0
        while got < size:
            if stall_timeout is not None and not self._wait_readable(stall_timeout, stop):
                return None
            count = os.readv(self._frames_fd, [view[got:]])
            if count == 0:
                if got:
                    log.warning("GStreamer pipeline ended inside a frame (%d of %d bytes); dropped", got, size)
                return None
            got += count
        return self.layout.to_bgr(data)

    def _wait_readable(self, stall_timeout: float, stop: threading.Event | None) -> bool:
        """Block until the pipe has bytes (True), for at most ``stall_timeout`` s, looking at ``stop``
        twice a second."""
        waited = 0.0
        while waited < stall_timeout:
            if stop is not None and stop.is_set():
                return False
            step = min(STOP_POLL_S, stall_timeout - waited)
            if select.select([self._frames_fd], [], [], step)[0]:
                return True
            waited += step
        log.warning("GStreamer pipeline delivered nothing for %.0f s", stall_timeout)
        return False

    def exit_status(self) -> tuple[int | None, str]:
        """The child's exit code once its output ended (None while it runs) and its last error line."""
        code = self.proc.poll() if self.proc is not None else None
        if code is None and self.proc is not None:
            try:
                code = self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                code = None
        if self._reader is not None:
            self._reader.join(2.0)
        errors = [line for line in self.lines if line.startswith("ERROR")]
        return code, errors[0] if errors else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._frames_fd >= 0:
            os.close(self._frames_fd)
            self._frames_fd = -1
        if self._reader is not None:
            self._reader.join(2.0)  # the child is gone: its messages end at once
        if self.proc is not None and self.proc.stdout is not None and not (self._reader and self._reader.is_alive()):
            self.proc.stdout.close()


def _widen_pipe(fd: int, frame_bytes: int) -> None:
    """A pipe holding a whole frame means one wake-up per frame, not one per 64 KiB."""
    if fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(max(frame_bytes, 65536), limit))
    except (OSError, ValueError):
        pass  # the default pipe size only costs more reads


# ---- which source a spec gets ----------------------------------------------------------------------
def local_path(spec: str) -> str:
    """``file:///a/b.mp4`` -> ``/a/b.mp4``; anything else unchanged."""
    return spec[len("file://") :] if spec[:7].lower() == "file://" else spec


@dataclass(frozen=True)
class GstPlan:
    """What ``runtime.sources`` needs to run a spec through GStreamer (``GstLiveSource`` or
    ``GstPipelineSource``); its elements are known to exist here."""

    spec: str
    pipeline: str
    description: str
    live: bool
    frame_count: int | None = None


def plan_gstreamer(spec: str, decoder: str = "auto") -> GstPlan | None:
    """How ``spec`` runs through GStreamer, or None when OpenCV opens it: camera indexes, http,
    images, and RTSP or files under ``--decoder opencv`` (or ``auto`` without hardware decoding).
    One RuntimeUserError line for a bad option or an element this machine lacks."""
    scheme = scheme_of(spec)
    if scheme in ("csi", "v4l2"):
        uri = split_uri(spec)
        pipeline = csi_pipeline(uri) if scheme == "csi" else v4l2_pipeline(uri)
        plan = GstPlan(spec, pipeline, f"{scheme.upper()} camera {uri.target}", live=True)
    elif scheme == "gst":
        plan = _pipeline_plan(split_uri(spec))
    elif scheme == "rtsp":
        plan = _rtsp_plan(split_uri(spec), decoder)
    else:
        plan = None if scheme else _file_plan(Path(spec), decoder)
    if plan is not None:
        require_elements(spec, plan.pipeline)
    return plan


def resolve_decoder(decoder: str, codec: str) -> str | None:
    """``cpu`` / ``nvdec`` for a GStreamer decode, None for OpenCV's; ``auto`` is nvdec where the
    Jetson elements exist."""
    if decoder == "opencv":
        return None
    if decoder == "auto":
        hardware = ("nvv4l2decoder", "nvvidconv", f"{codec}parse")
        return "nvdec" if shutil.which(LAUNCH) and all(map(element_exists, hardware)) else None
    return decoder


def _parser_wanted(decoder: str, codec: str) -> bool:
    """nvv4l2decoder needs the parser; avdec takes the demuxer's stream as it is, parsed if it can be."""
    return decoder == "nvdec" or element_exists(f"{codec}parse")


def _pipeline_plan(uri: SourceURI) -> GstPlan:
    if not uri.target:
        raise RuntimeUserError(f"{uri.spec}: gst:// needs a pipeline, e.g. gst://videotestsrc ! video/x-raw,width=640")
    description = "pipeline " + (uri.target if len(uri.target) <= 60 else uri.target[:57] + "...")
    first = pipeline_elements(uri.target)[:1]
    live = bool(first and first[0] in LIVE_ELEMENTS) or bool(re.search(r"\bis-live=(true|1)\b", uri.target))
    return GstPlan(uri.spec, uri.target, description, live)


def _rtsp_plan(uri: SourceURI, decoder: str) -> GstPlan | None:
    codec = rtsp_codec(uri)
    chosen = resolve_decoder(decoder, codec)
    if chosen is None:
        return None
    pipeline = rtsp_pipeline(uri, chosen, _parser_wanted(chosen, codec))
    return GstPlan(uri.spec, pipeline, f"stream {uri.target}", live=True)


def _file_plan(path: Path, decoder: str) -> GstPlan | None:
    if decoder == "opencv" or not path.is_file() or cv2.haveImageReader(str(path)):
        return None  # OpenCV opens pictures (and everything under --decoder opencv) itself
    if decoder == "auto" and resolve_decoder("auto", "h264") is None:
        return None  # no hardware decoder here: no need to look inside the file
    fourcc, frame_count = probe_video(path)
    codec = file_codec(path, fourcc)
    if codec is None:
        if decoder == "auto":
            return None
        raise RuntimeUserError(
            f"{path}: --decoder {decoder} decodes H.264/H.265 in .mp4/.mov/.mkv/.webm/.avi or "
            f"bare .h264/.h265 files; this is {fourcc or 'an unknown codec'} in "
            f"{path.suffix or 'a file without suffix'} (--decoder opencv reads it)"
        )
    chosen = resolve_decoder(decoder, codec)
    if chosen is None:
        return None
    pipeline = file_pipeline(path, codec, chosen, _parser_wanted(chosen, codec))
    return GstPlan(str(path), pipeline, str(path), live=False, frame_count=frame_count)


def probe_video(path: Path) -> tuple[str, int | None]:
    """The codec FOURCC in the file's header (as OpenCV reads it) and its frame count, if known."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return "", None
        code = int(capture.get(cv2.CAP_PROP_FOURCC) or 0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        capture.release()
    fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ")
    return fourcc, count if count > 0 else None
