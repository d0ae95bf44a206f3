"""The camera side of ``doctor``: GStreamer and the elements the camera sources use, the V4L2 devices
and their formats, and what this OpenCV build can open by itself.

``camera_report(report)`` adds one line per item to a doctor report (``report.add(name, status,
detail)``); ``camera_items()`` returns the same lines as (name, status, detail) tuples. Nothing here
is a failure: a machine without cameras or GStreamer is reported, not refused.
"""

import re
import shutil
import subprocess
from pathlib import Path

import cv2

from .gst import element_exists, gstreamer_version, resolve_decoder

# element -> what it serves, in the order the report lists them
ELEMENTS = {
    "nvarguscamerasrc": "csi:// cameras (JetPack)",
    "nvv4l2decoder": "--decoder nvdec (JetPack)",
    "nvvidconv": "NVMM -> system memory for csi:// and nvdec (JetPack)",
    "v4l2src": "v4l2:// USB cameras",
    "jpegdec": "v4l2:// MJPG",
    "avdec_h264": "--decoder cpu for H.264",
    "h264parse": "H.264 parsing (required by nvdec)",
}
Item = tuple[str, str, str]


def camera_items() -> list[Item]:
    return gstreamer_items() + device_items() + [opencv_item()]


def camera_report(report) -> None:
    """Doctor section: adds the camera lines to ``report``."""
    for name, status, detail in camera_items():
        report.add(name, status, detail)


def gstreamer_items() -> list[Item]:
    version = gstreamer_version()
    if version is None:
        return [
            (
                "gstreamer",
                "skipped",
                (
                    "gst-launch-1.0 not found: csi://, v4l2://, gst:// and --decoder cpu/nvdec "
                    "need gstreamer1.0-tools and its plugins"
                ),
            )
        ]
    items = [("gstreamer", "ok", version)]
    for element, use in ELEMENTS.items():
        found = element_exists(element)
        items.append((element, "ok" if found else "skipped", f"{'present' if found else 'missing'}: {use}"))
    chosen = resolve_decoder("auto", "h264") or "opencv"
    items.append(("--decoder auto", "info", f"H.264 files and RTSP decode through {chosen} here"))
    return items


def device_items(dev: Path = Path("/dev")) -> list[Item]:
    devices = sorted(dev.glob("video*"), key=lambda p: (len(p.name), p.name))
    if not devices:
        return [("v4l2 devices", "info", f"none ({dev}/video* absent)")]
    has_ctl = shutil.which("v4l2-ctl") is not None
    items = []
    for device in devices:
        if has_ctl:
            result = subprocess.run(
                ["v4l2-ctl", "-d", str(device), "--list-formats-ext"],
                check=False,
                capture_output=True,
                text=True,
                timeout=10,
            )
            detail = summarise_formats(result.stdout) if result.returncode == 0 else result.stderr.strip()[:120]
        else:
            detail = f"{sysfs_name(device)}; formats: install v4l-utils (v4l2-ctl --list-formats-ext)"
        items.append((str(device), "info", detail or "no capture formats (a metadata or output node)"))
    return items


def sysfs_name(device: Path) -> str:
    name = Path("/sys/class/video4linux") / device.name / "name"
    try:
        return name.read_text().strip()
    except OSError:
        return "name unknown"


def summarise_formats(text: str, sizes_per_format: int = 4) -> str:
    """``v4l2-ctl --list-formats-ext`` as ``MJPG 1280x720@30 640x480@30 | YUYV 640x480@30``: each size
    with its highest frame rate, the first few sizes of each format."""
    formats: dict[str, dict[str, float]] = {}
    fourcc = size = None
    for line in text.splitlines():
        if match := re.search(r"\[\d+\]: '(\w+)'", line):
            fourcc = match[1]
            formats.setdefault(fourcc, {})
        elif (match := re.search(r"Size: \w+ (\d+x\d+)", line)) and fourcc:
            size = match[1]
            formats[fourcc].setdefault(size, 0.0)
        elif (match := re.search(r"\(([\d.]+) fps\)", line)) and fourcc and size:
            formats[fourcc][size] = max(formats[fourcc][size], float(match[1]))
    parts = []
    for fourcc, sizes in formats.items():
        listed = [f"{s}@{fps:g}" if fps else s for s, fps in list(sizes.items())[:sizes_per_format]]
        more = f" (+{len(sizes) - sizes_per_format})" if len(sizes) > sizes_per_format else ""
        parts.append(" ".join([fourcc, *listed]) + more)
    return " | ".join(parts)


def opencv_item() -> Item:
    """The Video I/O section of cv2.getBuildInformation(): which capture back-ends OpenCV has."""
    section = cv2.getBuildInformation().split("Video I/O:", 1)[-1].split("\n\n", 1)[0]
    found = dict(re.findall(r"^ {4}(\w[\w/ ]*?):\s+(YES|NO)\b", section, re.MULTILINE))  # top level only
    detail = ", ".join(f"{name} {answer}" for name, answer in found.items()) or "no Video I/O section"
    return ("opencv video i/o", "info", f"OpenCV {cv2.__version__}: {detail}")
