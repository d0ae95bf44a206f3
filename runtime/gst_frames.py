"""Raw video frames as gst-launch writes them, turned into BGR: the caps line, GStreamer's default
layout of each format the runtime's sink accepts, and YUV → BGR by the frame's own colorimetry
(standard library, numpy and OpenCV only).

Decoders give I420 and ``nvvidconv`` gives BGRx; both pass ``videoconvert`` untouched and are
converted here, which is cheaper than ``videoconvert``'s own conversion to BGR and halves the
bytes through the pipe. Limited-range BT.601 I420 goes through OpenCV's own I420 conversion (what
OpenCV's FFmpeg path uses); BT.709, BT.2020 or full-range (JPEG) I420 through one affine
``cv2.transform`` with that standard's matrix.
"""

import re
from dataclasses import dataclass

import cv2
import numpy as np

SINK_FORMATS = ("BGR", "BGRx", "I420")  # what the sink accepts; videoconvert passes these through


@dataclass
class Caps:
    width: int
    height: int
    fps: float | None  # None: variable or unknown rate (framerate=0/1)
    format: str
    colorimetry: str = ""  # ``bt709`` or ``RANGE:MATRIX:TRANSFER:PRIMARIES`` (``2:3:0:0``); "" when not given


def parse_caps(text: str) -> Caps | None:
    """Width, height, rate, format and colorimetry of a ``video/x-raw, …`` caps string as gst-launch prints it."""
    fields = dict(re.findall(r"([a-z-]+)=\([a-z]+\)([^,]+)", text))
    try:
        width, height = int(fields["width"]), int(fields["height"])
    except (KeyError, ValueError):
        return None
    rate = re.fullmatch(r"(\d+)/(\d+)", fields.get("framerate", ""))
    fps = int(rate[1]) / int(rate[2]) if rate and int(rate[1]) > 0 and int(rate[2]) > 0 else None
    return Caps(width, height, fps, fields.get("format", "").strip('"'), fields.get("colorimetry", "").strip('"'))


def _round_up_4(value: int) -> int:
    return (value + 3) & ~3


# colorimetry names GStreamer prints -> (full range, matrix number as in RANGE:MATRIX:…)
NAMED_COLORIMETRY = {
    "bt601": (False, 4),
    "bt709": (False, 3),
    "smpte240m": (False, 5),
    "bt2020": (False, 6),
    "bt2020-10": (False, 6),
    "bt2100-pq": (False, 6),
    "bt2100-hlg": (False, 6),
}
MATRIX_KR_KB = {3: (0.2126, 0.0722), 4: (0.299, 0.114), 5: (0.212, 0.087), 6: (0.2627, 0.0593)}


def yuv_kind(colorimetry: str, height: int) -> tuple[bool, int]:
    """(full range, matrix) of a YUV frame; unknown parts as GStreamer assumes them (BT.709 above
    576 lines, BT.601 below; limited range)."""
    if colorimetry in NAMED_COLORIMETRY:
        return NAMED_COLORIMETRY[colorimetry]
    parts = colorimetry.split(":")
    full = parts[0] == "1" if parts[0].isdigit() else False
    matrix = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return full, matrix if matrix in MATRIX_KR_KB else (3 if height > 576 else 4)


def yuv_to_bgr_matrix(full_range: bool, matrix: int) -> np.ndarray:
    """3×4 affine map from (Y, U, V) to (B, G, R), 0-255, for ``cv2.transform``."""
    kr, kb = MATRIX_KR_KB[matrix]
    kg = 1.0 - kr - kb
    luma, chroma, black = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    rows = [(2 * (1 - kb), 0.0), (-2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg), (0.0, 2 * (1 - kr))]
    return np.array(
        [[luma, u * chroma, v * chroma, -black * luma - 128 * (u + v) * chroma] for u, v in rows], np.float32
    )


@dataclass
class FrameLayout:
    """Where GStreamer puts a frame's bytes (its default strides: rows padded to 4 bytes) and how
    they become an H×W×3 BGR array (YUV by its own range and matrix)."""

    format: str
    width: int
    height: int
    colorimetry: str = ""

    @property
    def nbytes(self) -> int:
        w, h = self.width, self.height
        if self.format == "BGR":
            return _round_up_4(w * 3) * h
        if self.format == "BGRx":
            return w * 4 * h
        chroma = _round_up_4((w + 1) // 2) * ((h + 1) // 2)
        return _round_up_4(w) * (h + h % 2) + 2 * chroma  # I420

    def to_bgr(self, data: np.ndarray) -> np.ndarray:
        w, h = self.width, self.height
        if self.format == "BGR":
            rows = data.reshape(h, -1)
            return (
                rows.reshape(h, w, 3)
                if rows.shape[1] == w * 3
                else np.ascontiguousarray(rows[:, : w * 3]).reshape(h, w, 3)
            )
        if self.format == "BGRx":
            return cv2.cvtColor(data.reshape(h, w, 4), cv2.COLOR_BGRA2BGR)
        full_range, matrix = yuv_kind(self.colorimetry, h)
        if not full_range and matrix == 4 and w % 8 == 0 and h % 2 == 0:  # no row padding: OpenCV's own layout
            return cv2.cvtColor(data.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)
        luma, u, v = self._i420_planes(data)
        if not full_range and matrix == 4:  # OpenCV's conversion is limited-range BT.601
            return _i420_bt601_to_bgr(luma, u, v)
        u, v = (cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in (u, v))
        return cv2.transform(cv2.merge([luma, u, v]), yuv_to_bgr_matrix(full_range, matrix))

    def _i420_planes(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y (H×W), U and V (⌈H/2⌉×⌈W/2⌉) views into GStreamer's I420 layout."""
        w, h = self.width, self.height
        luma_stride, chroma_w, chroma_h = _round_up_4(w), (w + 1) // 2, (h + 1) // 2
        chroma_stride = _round_up_4(chroma_w)
        u_start = luma_stride * (h + h % 2)
        v_start = u_start + chroma_stride * chroma_h
        luma = data[: luma_stride * h].reshape(h, luma_stride)[:, :w]
        u, v = (
            data[start : start + chroma_stride * chroma_h].reshape(chroma_h, chroma_stride)[:, :chroma_w]
            for start in (u_start, v_start)
        )
        return luma, u, v


def _i420_bt601_to_bgr(luma: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Padded rows or an odd size: the planes repacked as OpenCV wants them, then converted."""
    h, w = luma.shape
    if w % 2 or h % 2:  # OpenCV converts even sizes only: repeat the last row/column, crop after
        luma = np.pad(luma, ((0, h % 2), (0, w % 2)), mode="edge")
    packed = np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)])
    bgr = cv2.cvtColor(packed.reshape(u.shape[0] * 3, u.shape[1] * 2), cv2.COLOR_YUV2BGR_I420)
    return bgr if bgr.shape[:2] == (h, w) else np.ascontiguousarray(bgr[:h, :w])
