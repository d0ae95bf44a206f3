"""BGR frame → normalised RGB NCHW float32, once per frame, straight into a reusable buffer."""

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_MODES = ("letterbox", "crop")


@dataclass(frozen=True)
class Geometry:
    """Where the frame went in the model input, so the sentiment map can be put back on the frame.

    ``content`` (x, y, w, h) is the part of the S×S input that holds picture (letterbox bars are
    outside it); ``frame_rect`` (x, y, w, h) is the part of the frame it shows (the whole frame for
    letterbox, the centre square for crop).
    """

    input_size: int
    content: tuple[int, int, int, int]
    frame_rect: tuple[int, int, int, int]


def plan_geometry(frame_w: int, frame_h: int, input_size: int, mode: str) -> Geometry:
    s = input_size
    if mode == "letterbox":
        scale = s / max(frame_w, frame_h)
        w, h = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
        return Geometry(s, ((s - w) // 2, (s - h) // 2, w, h), (0, 0, frame_w, frame_h))
    if mode == "crop":
        side = min(frame_w, frame_h)
        return Geometry(s, (0, 0, s, s), ((frame_w - side) // 2, (frame_h - side) // 2, side, side))
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")


class Preprocessor:
    """``pre(frame_bgr, out)`` fills ``out`` (1×3×S×S float32) and returns the frame's Geometry."""

    def __init__(self, input_size: int, mean, std, mode: str = "letterbox") -> None:
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
        self.input_size = input_size
        self.mode = mode
        std = np.asarray(std, dtype=np.float32)
        # (pixel / 255 - mean) / std  ==  pixel * scale - offset, per RGB channel
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.offset = (np.asarray(mean, dtype=np.float32) / std).astype(np.float32)
        self._geometry: Geometry | None = None
        self._frame_size: tuple[int, int] | None = None

    def new_buffer(self, batch: int = 1) -> np.ndarray:
        return np.zeros((batch, 3, self.input_size, self.input_size), dtype=np.float32)

    def geometry(self, frame_w: int, frame_h: int) -> Geometry:
        if self._frame_size != (frame_w, frame_h):
            self._geometry = plan_geometry(frame_w, frame_h, self.input_size, self.mode)
            self._frame_size = (frame_w, frame_h)
        return self._geometry

    def __call__(self, frame_bgr: np.ndarray, out: np.ndarray, index: int = 0) -> Geometry:
        """Write the frame into ``out[index]`` (bars of a letterbox are zeros: the mean colour)."""
        h, w = frame_bgr.shape[:2]
        geo = self.geometry(w, h)
        fx, fy, fw, fh = geo.frame_rect
        cx, cy, cw, ch = geo.content
        region = frame_bgr[fy : fy + fh, fx : fx + fw]  # a view: crop costs nothing
        resized = shrink(region, cw, ch)
        if (cw, ch) != (self.input_size, self.input_size):
            out[index].fill(0.0)  # buffers are reused across frames of different sizes
        target = out[index, :, cy : cy + ch, cx : cx + cw]  # 3×ch×cw view into the buffer
        for rgb in range(3):  # BGR → RGB by reading channel 2 - rgb
            channel = target[rgb]
            np.multiply(resized[:, :, 2 - rgb], self.scale[rgb], out=channel, casting="unsafe")
            np.subtract(channel, self.offset[rgb], out=channel)
        return geo


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with anti-aliasing at a fraction of INTER_AREA's cost at odd ratios.

    INTER_AREA is fast only for whole-number factors (640×480 → 224×168 costs it ~5 ms, the
    two steps here ~0.6 ms): average k×k blocks first, then INTER_LINEAR the remaining < 2× step.
    """
    h, w = image.shape[:2]
    k = min(w // width, h // height)
    if k >= 2:
        # trim the few rows/columns that keep the factor whole (< k source pixels at the far edges)
        image = cv2.resize(image[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
