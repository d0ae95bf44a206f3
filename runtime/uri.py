"""Source URIs that become GStreamer pipelines: ``csi://``, ``v4l2://``, ``gst://``, and the decode
pipelines ``--decoder`` builds for ``rtsp://`` and video files (standard library only).

Every builder returns the pipeline up to raw frames in system memory; ``runtime.gst`` adds the
conversion and the sink.

- ``csi://N?width=1280&height=720&fps=30&flip=0``: ``nvarguscamerasrc sensor-id=N`` (Jetson CSI camera),
  ``flip`` is ``nvvidconv``'s flip-method (0-7: 2 = rotate 180°, 4 = mirror).
- ``v4l2:///dev/videoN?format=mjpg|yuyv&width=…&height=…&fps=…``: ``v4l2src``; MJPG is decoded by
  ``jpegdec``; without a size or rate the camera picks its own.
- ``gst://PIPELINE``: any ``gst-launch-1.0`` pipeline that ends in raw video (converted to BGR).
- ``rtsp://…`` and video files with ``--decoder cpu`` (``avdec_h264``/``avdec_h265``) or ``nvdec``
  (``nvv4l2decoder`` + ``nvvidconv``). An RTSP stream is taken as H.264 unless its URL ends in
  ``#codec=h265`` (the fragment never reaches the server); a file's codec is read from its header.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote
from urllib.parse import parse_qsl

from .errors import RuntimeUserError

DECODERS = ("auto", "opencv", "cpu", "nvdec")  # --decoder
GST_SCHEMES = ("csi", "v4l2", "gst")
CODECS = ("h264", "h265")
V4L2_FORMATS = {"mjpg": "image/jpeg", "yuyv": "video/x-raw,format=YUY2"}
CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30, "flip": 0}
DEMUXERS = {
    ".mp4": "qtdemux",
    ".m4v": "qtdemux",
    ".mov": "qtdemux",
    ".3gp": "qtdemux",
    ".mkv": "matroskademux",
    ".webm": "matroskademux",
    ".avi": "avidemux",
}
ELEMENTARY_SUFFIXES = {".h264": "h264", ".264": "h264", ".h265": "h265", ".265": "h265"}
# FOURCCs in a container header, as OpenCV reports them, for each codec the decode pipelines handle
FOURCC_CODECS = {
    "avc1": "h264",
    "avc3": "h264",
    "h264": "h264",
    "x264": "h264",
    "hev1": "h265",
    "hvc1": "h265",
    "hevc": "h265",
    "h265": "h265",
}
NV_TO_SYSTEM = "nvvidconv ! video/x-raw,format=BGRx"  # NVMM to system memory, converted by the VIC


@dataclass
class SourceURI:
    spec: str  # as given, for messages
    scheme: str
    target: str  # sensor id, device path, pipeline text, file path or stream URL
    options: dict[str, str] = field(default_factory=dict)


def scheme_of(spec: str) -> str:
    """``csi`` for ``csi://0``, lower case; "" when ``spec`` is no URI (a path or a camera index)."""
    scheme, separator, _ = spec.partition("://")
    return scheme.lower() if separator and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else ""


def split_uri(spec: str) -> SourceURI:
    """``scheme://target?options`` (``gst://`` keeps its text whole, ``rtsp://`` its own query and
    gives up only a ``#`` fragment of options)."""
    scheme, _, rest = spec.partition("://")
    scheme = scheme.lower()
    if scheme == "gst":
        return SourceURI(spec, scheme, rest.strip())
    if scheme in ("csi", "v4l2"):
        target, _, query = rest.partition("?")
    else:
        target, _, query = rest.partition("#")
        target = f"{spec.partition('://')[0]}://{target}"
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise RuntimeUserError(f"{spec}: options must read name=value&name=value, got {query!r}") from None
    return SourceURI(spec, scheme, target, {k.lower(): v for k, v in options.items()})


def _check_names(uri: SourceURI, allowed) -> None:
    unknown = sorted(set(uri.options) - set(allowed))
    if unknown:
        raise RuntimeUserError(f"{uri.spec}: unknown option {', '.join(unknown)} (choose from {', '.join(allowed)})")


def _int_option(uri: SourceURI, name: str, low: int, high: int, default: int | None = None) -> int | None:
    text = uri.options.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise RuntimeUserError(f"{uri.spec}: {name} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def _raw_caps(media: str, width: int | None, height: int | None, fps: int | None) -> str:
    parts = [media] + [f"{k}={v}" for k, v in (("width", width), ("height", height)) if v is not None]
    if fps is not None:
        parts.append(f"framerate={fps}/1")
    return ",".join(parts)


def csi_pipeline(uri: SourceURI) -> str:
    _check_names(uri, CSI_DEFAULTS)
    if not uri.target.isdigit():
        raise RuntimeUserError(f"{uri.spec}: a CSI camera is csi://N, N the sensor id (csi://0)")
    width = _int_option(uri, "width", 1, 8192, CSI_DEFAULTS["width"])
    height = _int_option(uri, "height", 1, 8192, CSI_DEFAULTS["height"])
    fps = _int_option(uri, "fps", 1, 240, CSI_DEFAULTS["fps"])
    flip = _int_option(uri, "flip", 0, 7, CSI_DEFAULTS["flip"])
    caps = _raw_caps("video/x-raw(memory:NVMM)", width, height, fps) + ",format=NV12"
    return (
        f"nvarguscamerasrc sensor-id={int(uri.target)} ! {caps} ! nvvidconv flip-method={flip} ! "
        "video/x-raw,format=BGRx"
    )


def v4l2_pipeline(uri: SourceURI) -> str:
    _check_names(uri, ("format", "width", "height", "fps"))
    device = uri.target if uri.target.startswith("/") else f"/dev/video{uri.target}"
    if not uri.target or (not uri.target.startswith("/") and not uri.target.isdigit()):
        raise RuntimeUserError(f"{uri.spec}: a V4L2 camera is v4l2:///dev/videoN")
    pixel_format = uri.options.get("format", "mjpg").lower()
    if pixel_format not in V4L2_FORMATS:
        raise RuntimeUserError(f"{uri.spec}: format must be one of {', '.join(V4L2_FORMATS)}, got {pixel_format!r}")
    caps = _raw_caps(
        V4L2_FORMATS[pixel_format],
        _int_option(uri, "width", 1, 8192),
        _int_option(uri, "height", 1, 8192),
        _int_option(uri, "fps", 1, 240),
    )
    decode = " ! jpegdec" if pixel_format == "mjpg" else ""
    return f"v4l2src device={quote(device)} ! {caps}{decode}"


def decoder_chain(codec: str, decoder: str, parser: bool) -> str:
    """Elementary H.264/H.265 stream to raw frames: ``[h26xparse !] decoder [! nvvidconv]``."""
    parse = f"{codec}parse ! " if parser else ""
    if decoder == "nvdec":
        return f"{parse}nvv4l2decoder ! {NV_TO_SYSTEM}"
    return f"{parse}avdec_{codec}"


def rtsp_codec(uri: SourceURI) -> str:
    """The codec an ``rtsp://…#codec=…&latency=…`` stream is read as (options checked)."""
    _check_names(uri, ("codec", "latency"))
    return _codec_option(uri)


def rtsp_pipeline(uri: SourceURI, decoder: str, parser: bool, latency_ms: int = 200) -> str:
    codec = rtsp_codec(uri)
    latency = _int_option(uri, "latency", 0, 60000, latency_ms)
    return f"rtspsrc location={quote(uri.target)} latency={latency} ! rtp{codec}depay ! " + decoder_chain(
        codec, decoder, parser
    )


def _codec_option(uri: SourceURI) -> str:
    codec = uri.options.get("codec", "h264").lower()
    if codec not in CODECS:
        raise RuntimeUserError(f"{uri.spec}: codec must be one of {', '.join(CODECS)}, got {codec!r}")
    return codec


def file_pipeline(path: Path, codec: str, decoder: str, parser: bool) -> str:
    """filesrc, the container's demuxer (none for a bare .h264/.h265 stream), then the decoder."""
    suffix = path.suffix.lower()
    demux = "" if suffix in ELEMENTARY_SUFFIXES else f"{DEMUXERS[suffix]} ! "
    return f"filesrc location={quote(str(path))} ! {demux}" + decoder_chain(codec, decoder, parser)


def file_codec(path: Path, fourcc: str) -> str | None:
    """h264 / h265 for a file the decode pipelines can read (container known, codec H.264/H.265), else None."""
    suffix = path.suffix.lower()
    if suffix in ELEMENTARY_SUFFIXES:
        return ELEMENTARY_SUFFIXES[suffix]
    if suffix not in DEMUXERS:
        return None
    return FOURCC_CODECS.get(fourcc.strip().lower())
