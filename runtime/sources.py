"""Frame sources: camera index, video file, image, folder of images, RTSP/HTTP stream URL; CSI and
V4L2 cameras and any GStreamer pipeline through ``runtime.gst``.

Every source yields ``Frame``s in order. Live sources (cameras, streams) are ``LiveSource``s: the
pipeline keeps only their newest frame, and when one stops delivering it is reconnected with
capped exponential backoff (``ReconnectPolicy``: forever unless ``--reconnect N`` limits it), also
when it is down at the start. Each outage is a ``source_offline`` event and, when the source is
back, a ``source_online`` event with its duration. Files end at their last frame. A frame that
cannot be decoded is counted in ``corrupt`` and skipped.
"""

import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .errors import RuntimeUserError, SourceUnavailable, log
from .events import SOURCE_OFFLINE, SOURCE_ONLINE
from .gst import STALL_TIMEOUT_S, GstPlan, GstProcess, LaunchFailed, local_path, plan_gstreamer

# FFmpeg's own complaints about damaged packets would interleave with the progress bar; the
# runtime counts and reports bad frames itself (set OPENCV_FFMPEG_LOGLEVEL to see them again).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what OpenCV reads as a picture
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    index: int  # position in the source: gaps mean skipped (corrupt) or dropped frames
    timestamp: float  # seconds: media time for files, time since start for live sources
    image: np.ndarray  # H×W×3 uint8 BGR
    captured: float  # time.perf_counter() when it was read, for end-to-end latency
    wall: float | None = None  # time.time() when it was read: the record's wall-clock time


class Source:
    description = "source"
    live = False
    fps = DEFAULT_FPS
    frame_count: int | None = None  # None when unknown (live, streams)
    width = height = 0  # of the first frame: the size a saved video gets (0: not known yet)
    corrupt = 0  # frames skipped because they could not be decoded
    unread = 0  # frames a file's header promised that never came (truncated file)
    lost = False  # a live source whose reconnection attempts were used up

    def attach(self, stop: threading.Event, on_event: Callable[[str, dict], None]) -> None:
        """The pipeline's stop flag (waits end early when it is set) and where events go."""
        self._stop, self._on_event = stop, on_event

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ReconnectPolicy:
    """Waits between reconnection attempts: ``initial_s`` doubling up to ``cap_s``, each with ±``jitter``
    (a fraction) so that many cameras do not retry in step. ``max_attempts`` consecutive failures
    end the source (None: never); a good frame starts the count again."""

    def __init__(
        self,
        max_attempts: int | None = None,
        initial_s: float = 0.5,
        cap_s: float = 30.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts is not None and max_attempts < 0:
            raise RuntimeUserError(f"--reconnect must be 0 or more attempts, got {max_attempts}")
        if initial_s < 0 or cap_s < initial_s or not 0 <= jitter < 1:
            raise ValueError("reconnect delays need 0 <= initial_s <= cap_s and 0 <= jitter < 1")
        self.max_attempts, self.initial_s, self.cap_s, self.jitter = max_attempts, initial_s, cap_s, jitter
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1, 2, …)."""
        base = min(self.initial_s * 2 ** (attempt - 1), self.cap_s)
        return base * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0))

    def gives_up(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt > self.max_attempts


class LiveSource(Source):
    """A camera or stream. Subclasses implement ``_connect`` (raise ``SourceUnavailable`` when it
    cannot deliver now), ``_read`` (the next BGR frame, or None when the source is lost) and
    ``_disconnect``; this class keeps it coming back."""

    live = True

    def __init__(self, description: str, policy: ReconnectPolicy | None = None) -> None:
        self.description = description
        self.policy = policy or ReconnectPolicy()
        self.corrupt = 0
        self.connected = False
        self.offline_since: float | None = None  # time.time() when the current outage began
        self.outages = 0
        self.problem = ""  # why the source is offline (or was, when it was lost)
        self._stop = threading.Event()
        self._on_event: Callable[[str, dict], None] = lambda kind, data: None
        self._try_first_connection()

    # ---- what subclasses implement -----------------------------------------------------------
    def _connect(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        pass

    # ---- the reconnecting loop -----------------------------------------------------------------
    def attach(self, stop: threading.Event, on_event: Callable[[str, dict], None]) -> None:
        super().attach(stop, on_event)
        if self.offline_since is not None:  # down since the start: that outage is an event too
            on_event(SOURCE_OFFLINE, {"reason": self.problem})

    def frames(self) -> Iterator[Frame]:
        start = time.perf_counter()
        index = 0
        while not self._stop.is_set():
            if not self.connected and not self._reconnect():
                return
            image = self._read()
            if image is None:
                self._went_offline("stopped delivering frames")
                continue
            if self.offline_since is not None:
                self._came_back()
            now = time.perf_counter()
            yield Frame(index, now - start, image, now, time.time())
            index += 1

    def _try_first_connection(self) -> None:
        try:
            self._connect()
            self.connected = True
        except SourceUnavailable as exc:
            self._went_offline(str(exc), quiet=self.policy.gives_up(1))

    def _went_offline(self, reason: str, quiet: bool = False) -> None:
        self._disconnect()
        self.connected = False
        self.problem = reason
        if self.offline_since is None:
            self.offline_since = time.time()
            self._on_event(SOURCE_OFFLINE, {"reason": reason})
            if not quiet:
                log.warning(f"{self.description}: {reason}; reconnecting")

    def _came_back(self) -> None:
        offline_s = time.time() - self.offline_since
        self.offline_since = None
        self.outages += 1
        self._on_event(SOURCE_ONLINE, {"offline_s": round(offline_s, 3)})
        log.info(f"{self.description}: back after {offline_s:.1f} s")

    def _reconnect(self) -> bool:
        """Attempts with the policy's waits until one connects; False when it gives up or the run stops."""
        attempt = 0
        while True:
            attempt += 1
            if self.policy.gives_up(attempt):
                self.lost = True
                return False
            if self._stop.wait(self.policy.delay(attempt)):
                return False
            try:
                self._connect()
            except SourceUnavailable as exc:
                self.problem = str(exc)
                log.debug(f"{self.description}: attempt {attempt} failed ({exc})")
                continue
            self.connected = True
            return True

    def close(self) -> None:
        self._disconnect()
        self.connected = False


class CaptureSource(LiveSource):
    """A camera or stream read through ``cv2.VideoCapture`` (``opener`` builds the capture)."""

    def __init__(
        self,
        target,
        description: str,
        policy: ReconnectPolicy | None = None,
        opener: Callable[[object], object] | None = None,
        max_bad_reads: int = 8,
        unopenable: str = "cannot open",
    ) -> None:
        self.target, self.unopenable, self.max_bad_reads = target, unopenable, max_bad_reads
        self._open = opener or _open_capture
        self.capture = None
        self._first: np.ndarray | None = None
        super().__init__(description, policy)

    def _connect(self) -> None:
        capture = self._open(self.target)
        if capture is None or not capture.isOpened():
            raise SourceUnavailable(self.unopenable)
        ok, first = capture.read()
        if not ok or not _is_image(first):
            capture.release()
            raise SourceUnavailable("opened, but no frame could be read from it")
        self.capture, self._first = capture, first
        self.height, self.width = first.shape[:2]
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS

    def _read(self) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        for _ in range(self.max_bad_reads + 1):
            ok, image = self.capture.read()
            if not ok:
                return None
            if _is_image(image):
                return image
            self.corrupt += 1  # decoded, but garbage: count it and read on
        return None

    def _disconnect(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class VideoFileSource(Source):
    """A video file through ``cv2.VideoCapture``: every frame in order, corrupt ones counted and skipped."""

    def __init__(
        self,
        path: str,
        opener: Callable[[object], object] | None = None,
        max_bad_reads: int = 8,
        unopenable: str = "not a video OpenCV can decode (unknown format, or damaged)",
    ) -> None:
        self.description = str(path)
        self.max_bad_reads = max_bad_reads
        self.corrupt = self.decoded = self.unread = 0
        self.capture = (opener or _open_capture)(path)
        if self.capture is None or not self.capture.isOpened():
            raise RuntimeUserError(f"{path}: {unopenable}")
        ok, first = self.capture.read()
        if not ok or not _is_image(first):
            self.capture.release()
            raise RuntimeUserError(f"{path}: opened, but no frame could be read from it")
        self._first = first
        self.height, self.width = first.shape[:2]
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None

    def frames(self) -> Iterator[Frame]:
        index = 0
        image, self._first = self._first, None
        while image is not None:
            now = time.perf_counter()
            yield Frame(index, index / self.fps, image, now, time.time())
            self.decoded += 1
            index += 1
            image, skipped = self._next_image()
            index += skipped
        if self.frame_count:  # truncated file, or frames the decoder dropped without a word
            self.unread = max(0, self.frame_count - self.decoded - self.corrupt)

    def _next_image(self) -> tuple[np.ndarray | None, int]:
        """The next good frame and how many bad ones were skipped before it; (None, _) at the end."""
        bad = 0
        while bad <= self.max_bad_reads:
            ok, image = self.capture.read()
            if ok and _is_image(image) and image.shape[:2] == (self.height, self.width):
                self.corrupt += bad
                return image, bad
            if not ok and (bad >= self.max_bad_reads or not self._more_expected(bad)):
                break
            bad += 1  # garbage, a different size, or a failed read inside the file: one corrupt frame
        return None, bad

    def _more_expected(self, bad: int) -> bool:
        """A failed read inside a file whose header promises more frames may be one corrupt frame."""
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0
        position = self.capture.get(cv2.CAP_PROP_POS_FRAMES) or 0
        return position + bad < count - 1

    def close(self) -> None:
        self.capture.release()


class GstLiveSource(LiveSource):
    """A camera or stream through a ``gst-launch-1.0`` child (``runtime.gst``): a new child when the
    old one dies, stalls or ends. A pipeline that cannot be linked is an error at once; a device or
    stream that cannot be reached is retried."""

    def __init__(self, plan: GstPlan, policy: ReconnectPolicy | None = None) -> None:
        self.plan = plan
        self.process: GstProcess | None = None
        super().__init__(plan.description, policy)

    def _connect(self) -> None:
        process = GstProcess(self.plan.pipeline, live=True)
        try:
            caps = process.start()
        except LaunchFailed as exc:
            if exc.permanent:
                raise RuntimeUserError(f"{self.description}: {exc}") from None
            raise SourceUnavailable(str(exc)) from None
        self.process = process
        self.width, self.height, self.fps = caps.width, caps.height, _usable_fps(caps.fps)

    def _read(self) -> np.ndarray | None:
        if self.process is None:
            return None
        image = self.process.read_frame(STALL_TIMEOUT_S, self._stop)
        if image is None and not self._stop.is_set():
            code, error = self.process.exit_status()
            log.info(f"{self.description}: GStreamer child ended (exit code {code}){': ' + error if error else ''}")
        return image

    def _disconnect(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class GstPipelineSource(Source):
    """A file or a finite pipeline through a ``gst-launch-1.0`` child: every frame in order, to its end."""

    def __init__(self, plan: GstPlan) -> None:
        self.description, self.frame_count = plan.description, plan.frame_count
        self.corrupt = self.unread = self.decoded = 0
        self.process = GstProcess(plan.pipeline, live=False)
        try:
            caps = self.process.start()
        except LaunchFailed as exc:
            raise RuntimeUserError(f"{plan.description}: {exc}") from None
        self.width, self.height, self.fps = caps.width, caps.height, _usable_fps(caps.fps)

    def frames(self) -> Iterator[Frame]:
        index = 0
        while (image := self.process.read_frame()) is not None:
            yield Frame(index, index / self.fps, image, time.perf_counter(), time.time())
            index += 1
            self.decoded += 1
        code, error = self.process.exit_status()
        if code not in (0, None):
            log.warning(
                f"{self.description}: GStreamer stopped after {self.decoded} frames (exit code {code})"
                + (f": {error}" if error else "")
            )
        if self.frame_count:
            self.unread = max(0, self.frame_count - self.decoded)

    def close(self) -> None:
        self.process.stop()


def _usable_fps(fps: float | None) -> float:
    return float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS


def VideoSource(
    target,
    description: str,
    live: bool,
    retries: int | None = None,
    retry_delay: float = 0.5,
    opener: Callable[[object], object] | None = None,
    max_bad_reads: int = 8,
    unopenable: str = "cannot open",
) -> Source:
    """A ``cv2.VideoCapture`` source: a ``CaptureSource`` (live; ``retries`` reconnection attempts in
    a row, None for ever, the first after ``retry_delay`` s) or a ``VideoFileSource``."""
    if live:
        policy = ReconnectPolicy(retries, initial_s=retry_delay, cap_s=max(30.0, retry_delay))
        return CaptureSource(target, description, policy, opener, max_bad_reads, unopenable)
    return VideoFileSource(str(target), opener, max_bad_reads, unopenable)


def open_source(spec: str | int, reconnect: int | None = None, decoder: str = "auto") -> Source:
    """Open what ``--source`` names; one RuntimeUserError line when it cannot be opened. A live source
    that is down is retried (``reconnect``: attempts in a row before it is given up; None: for ever).
    ``decoder``: how RTSP streams and video files are decoded (``runtime.uri.DECODERS``)."""
    spec = local_path(str(spec).strip())
    plan = plan_gstreamer(spec, decoder)  # csi://, v4l2://, gst://, and GStreamer decoding
    if plan is not None:
        return GstLiveSource(plan, ReconnectPolicy(reconnect)) if plan.live else GstPipelineSource(plan)
    if spec.isdigit():
        return VideoSource(
            int(spec), f"camera {spec}", live=True, retries=reconnect, unopenable="no such camera, or it is busy"
        )
    if URL.match(spec):
        return VideoSource(
            spec,
            f"stream {spec}",
            live=True,
            retries=reconnect,
            unopenable="cannot connect, or not a stream OpenCV can decode",
        )
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise RuntimeUserError(f"{spec}: no such file, folder, camera index or stream URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path)
    return VideoFileSource(str(path))


def read_source_list(path: str | Path) -> list[str]:
    """``--sources FILE``: one source per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeUserError(
            f"{path}: cannot read the source list ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    specs = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not specs:
        raise RuntimeUserError(f"{path}: the source list names no source")
    return specs


def stream_names(specs: list[str]) -> list[str]:
    """A short, file-name-safe, unique name per source: file stem, ``camera0``, stream host+path."""
    names, seen = [], {}
    for spec in specs:
        spec = str(spec).strip()
        if spec.isdigit():
            base = f"camera{spec}"
        elif URL.match(spec):
            base = URL.sub("", spec)
        else:
            base = Path(spec).stem or Path(spec).name
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:32].strip("-.") or "stream"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def open_sources(
    specs: list[str], keep_going: bool = False, reconnect: int | None = None, decoder: str = "auto"
) -> list[tuple[str, Source]]:
    """(name, Source) for each spec. One that cannot be opened is one error line naming it, or,
    with ``keep_going``, a warning line while the others run."""
    opened: list[tuple[str, Source]] = []
    for name, spec in zip(stream_names(specs), specs):
        try:
            opened.append((name, open_source(spec, reconnect, decoder)))
        except RuntimeUserError as exc:
            if not keep_going:
                for _, source in opened:
                    source.close()
                hint = " (--keep-going runs the other sources)" if len(specs) > 1 else ""
                raise RuntimeUserError(f"{exc}{hint}") from None
            log.warning(f"{exc}; running the other sources")
    if not opened:
        raise RuntimeUserError(f"none of the {len(specs)} sources could be opened")
    return opened


def _open_capture(target):
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no WARN lines per backend tried
    try:
        capture = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if isinstance(target, int) and capture.isOpened():
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a camera's own queue only adds latency
    return capture


def _is_image(image) -> bool:
    return isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.size > 0


class ImageFolderSource(Source):
    """One image, or every image of a folder in name order; unreadable images are counted and skipped."""

    def __init__(self, path: Path, fps: float = 1.0) -> None:
        self.description = str(path)
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.paths:
                raise RuntimeUserError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            self.paths = [path]
        first = next((image for image in map(_read_image, self.paths) if image is not None), None)
        if first is None:
            what = "holds no image OpenCV can read" if path.is_dir() else "not an image OpenCV can read"
            raise RuntimeUserError(f"{path}: {what}")
        self.fps = fps
        self.frame_count = len(self.paths)
        self.corrupt = 0
        self.height, self.width = first.shape[:2]  # the size a saved video gets

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            image = _read_image(path)
            if image is None:
                self.corrupt += 1
                log.warning(f"{path}: unreadable image, skipped")
                continue
            yield Frame(index, index / self.fps, image, time.perf_counter(), time.time())


def _read_image(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return image if _is_image(image) else None
