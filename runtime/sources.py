"""Frame sources: camera index, video file, image, folder of images, RTSP/HTTP stream URL.

Every source yields ``Frame``s in order. Live sources (camera, stream) are marked ``live``: the
pipeline then keeps only the newest frame. A frame that cannot be decoded is counted in
``corrupt`` and skipped; a live source that stops delivering is reopened a few times, then ends.
"""

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .errors import RuntimeUserError

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


class Source:
    description = "source"
    live = False
    fps = DEFAULT_FPS
    frame_count: int | None = None  # None when unknown (live, streams)
    width = height = 0  # of the first frame: the size a saved video gets
    corrupt = 0  # frames skipped because they could not be decoded
    unread = 0  # frames a file's header promised that never came (truncated file)

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_source(spec: str | int, retries: int = 3, retry_delay: float = 0.5, decoder: str = "auto") -> Source:
    """Open what ``--source`` names; one RuntimeUserError line when it cannot be opened.
    ``decoder``: how RTSP streams and video files are decoded (``runtime.uri.DECODERS``)."""
    from .gst import local_path, open_gstreamer  # csi://, v4l2://, gst:// and GStreamer decoding

    spec = local_path(str(spec).strip())
    gstreamer = open_gstreamer(spec, decoder)
    if gstreamer is not None:
        return gstreamer
    if spec.isdigit():
        return VideoSource(int(spec), f"camera {spec}", live=True, retries=retries, retry_delay=retry_delay,
                           unopenable="no such camera, or it is busy")
    if URL.match(spec):
        return VideoSource(spec, f"stream {spec}", live=True, retries=retries, retry_delay=retry_delay,
                           unopenable="cannot connect, or not a stream OpenCV can decode")
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise RuntimeUserError(f"{spec}: no such file, folder, camera index or stream URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path)
    return VideoSource(str(path), str(path), live=False,
                       unopenable="not a video OpenCV can decode (unknown format, or damaged)")


def read_source_list(path: str | Path) -> list[str]:
    """``--sources FILE``: one source per line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeUserError(f"{path}: cannot read the source list ({getattr(exc, 'strerror', None) or exc})") from None
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
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "stream"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def open_sources(specs: list[str], keep_going: bool = False, decoder: str = "auto") -> list[tuple[str, Source]]:
    """(name, Source) for each spec. One that cannot be opened is one error line naming it, or,
    with ``keep_going``, a warning line while the others run."""
    opened: list[tuple[str, Source]] = []
    for name, spec in zip(stream_names(specs), specs):
        try:
            opened.append((name, open_source(spec, decoder=decoder)))
        except RuntimeUserError as exc:
            if not keep_going:
                for _, source in opened:
                    source.close()
                hint = " (--keep-going runs the other sources)" if len(specs) > 1 else ""
                raise RuntimeUserError(f"{exc}{hint}") from None
            print(f"warning: {exc}; running the other sources", file=sys.stderr)
    if not opened:
        raise RuntimeUserError(f"none of the {len(specs)} sources could be opened")
    return opened


class VideoSource(Source):
    """cv2.VideoCapture over a file, camera or stream."""

    def __init__(self, target, description: str, live: bool, retries: int = 3, retry_delay: float = 0.5,
                 opener: Callable[[object], object] | None = None, max_bad_reads: int = 8,
                 unopenable: str = "cannot open") -> None:
        self.target = target
        self.description = description
        self.live = live
        self.retries = retries
        self.retry_delay = retry_delay
        self.max_bad_reads = max_bad_reads
        self.corrupt = 0
        self._attempts = 0
        self.decoded = 0
        self.unread = 0  # frames the header promised but that could not be decoded at the end
        self._open = opener or _open_capture
        self.capture = self._open(target)
        if self.capture is None or not self.capture.isOpened():
            raise RuntimeUserError(f"{description}: {unopenable}")
        ok, first = self.capture.read()
        if not ok or not _is_image(first):
            self.capture.release()
            raise RuntimeUserError(f"{description}: opened, but no frame could be read from it")
        self._first = first
        self.height, self.width = first.shape[:2]
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = None if live or count <= 0 else count

    def frames(self) -> Iterator[Frame]:
        start = time.perf_counter()
        index = 0
        image = self._first
        self._first = None
        while image is not None:
            now = time.perf_counter()
            timestamp = now - start if self.live else index / self.fps
            yield Frame(index, timestamp, image, now)
            self.decoded += 1
            index += 1
            image, skipped = self._next_image()
            index += skipped
        if self.frame_count:  # truncated file, or frames the decoder dropped without a word
            self.unread = max(0, self.frame_count - self.decoded - self.corrupt)

    def _next_image(self) -> tuple[np.ndarray | None, int]:
        """The next good frame and how many bad ones were skipped before it; (None, _) at the end."""
        bad = 0
        while True:
            ok, image = self.capture.read()
            if ok and _is_image(image) and image.shape[:2] == (self.height, self.width):
                self.corrupt += bad
                self._attempts = 0
                return image, bad
            if ok:  # decoded, but garbage or a different size: count it and move on
                bad += 1
                if bad <= self.max_bad_reads:
                    continue
            elif not self.live and bad < self.max_bad_reads and self._more_expected(bad):
                bad += 1
                continue
            if self.live and self._reconnect():
                continue
            return None, bad

    def _more_expected(self, bad: int) -> bool:
        """A failed read inside a file whose header promises more frames may be one corrupt frame."""
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0
        position = self.capture.get(cv2.CAP_PROP_POS_FRAMES) or 0
        return position + bad < count - 1

    def _reconnect(self) -> bool:
        """Reopen a live source; the attempts count until a good frame arrives again."""
        while self._attempts < self.retries:
            self._attempts += 1
            attempt = self._attempts
            print(f"warning: {self.description} stopped delivering frames; reconnecting "
                  f"({attempt}/{self.retries})", file=sys.stderr)
            self.capture.release()
            time.sleep(self.retry_delay * attempt)
            self.capture = self._open(self.target)
            if self.capture is not None and self.capture.isOpened():
                return True
        print(f"warning: {self.description} is gone after {self.retries} reconnection attempts; "
              "ending the run", file=sys.stderr)
        return False

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()


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
                print(f"warning: {path}: unreadable image, skipped", file=sys.stderr)
                continue
            yield Frame(index, index / self.fps, image, time.perf_counter())


def _read_image(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return image if _is_image(image) else None
