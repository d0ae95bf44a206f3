"""The one frame → tensor function for exported models: a BGR frame of any shape → the model's
normalised RGB NCHW float32 input, following the model's InputContract, written straight into a
reusable buffer. The runtime, calibration, parity, bench and the training/eval transforms all
call this; nothing else turns pictures into model inputs."""

from dataclasses import dataclass

import cv2
import numpy as np

from .contract import GEOMETRIES, InputContract


@dataclass(frozen=True)
class Geometry:
    """Where the frame went in the model input, so the sentiment map can be put back on the frame.

    ``content`` (x, y, w, h) is the part of the S×S input that holds picture (letterbox bars are
    outside it); ``frame_rect`` (x, y, w, h) is the part of the frame it shows (the whole frame for
    squash and letterbox, the centre square for crop).
    """

    input_size: int
    content: tuple[int, int, int, int]
    frame_rect: tuple[int, int, int, int]


def plan_geometry(frame_w: int, frame_h: int, input_size: int, geometry: str) -> Geometry:
    s = input_size
    if geometry == "squash":
        return Geometry(s, (0, 0, s, s), (0, 0, frame_w, frame_h))
    if geometry == "letterbox":
        scale = s / max(frame_w, frame_h)
        w, h = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
        return Geometry(s, ((s - w) // 2, (s - h) // 2, w, h), (0, 0, frame_w, frame_h))
    if geometry == "crop":
        side = min(frame_w, frame_h)
        return Geometry(s, (0, 0, s, s), ((frame_w - side) // 2, (frame_h - side) // 2, side, side))
    raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}; got {geometry!r}")


class Preprocessor:
    """``pre(frame_bgr, out, index)`` fills ``out[index]`` (3×S×S float32) and returns the Geometry."""

    def __init__(self, contract: InputContract) -> None:
        if not isinstance(contract, InputContract):
            raise TypeError(f"Preprocessor needs an InputContract, got {type(contract).__name__}")
        self.contract = contract
        self.input_size = contract.input_size
        std = np.asarray(contract.std, dtype=np.float32)
        # (pixel / 255 - mean) / std  ==  pixel * scale - offset, per RGB channel
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.offset = (np.asarray(contract.mean, dtype=np.float32) / std).astype(np.float32)
        self._scale_rgb = self.scale[:, None, None]  # broadcast over a 3×h×w plane stack
        self._offset_rgb = self.offset[:, None, None]
        self._geometry: Geometry | None = None
        self._frame_size: tuple[int, int] | None = None

    def new_buffer(self, batch: int = 1) -> np.ndarray:
        return np.zeros((batch, 3, self.input_size, self.input_size), dtype=np.float32)

    def geometry(self, frame_w: int, frame_h: int) -> Geometry:
        if self._frame_size != (frame_w, frame_h):
            self._geometry = plan_geometry(frame_w, frame_h, self.input_size, self.contract.geometry)
            self._frame_size = (frame_w, frame_h)
        return self._geometry

    def __call__(self, frame_bgr: np.ndarray, out: np.ndarray, index: int = 0) -> Geometry:
        """Write the frame into ``out[index]`` (bars of a letterbox are zeros: the mean colour)."""
        h, w = frame_bgr.shape[:2]
        geo = self.geometry(w, h)
        fx, fy, fw, fh = geo.frame_rect
        cx, cy, cw, ch = geo.content
        region = frame_bgr[fy : fy + fh, fx : fx + fw]  # a view: crop costs nothing
        resized = resize_picture(region, cw, ch, self.contract.interpolation)
        if (cw, ch) != (self.input_size, self.input_size):
            out[index].fill(0.0)  # buffers are reused across frames of different sizes
        self.normalise(resized, out[index, :, cy : cy + ch, cx : cx + cw])  # a 3×ch×cw view into the buffer
        return geo

    def normalise(self, picture_bgr: np.ndarray, target: np.ndarray) -> None:
        """h×w×3 BGR uint8 → ``target`` (3×h×w float32): RGB, (pixel / 255 - mean) / std."""
        planes = picture_bgr.transpose(2, 0, 1)[::-1]  # BGR h×w×3 → RGB 3×h×w, a view: no copy
        # uint8 → float32 inside the multiply, straight into the buffer: two passes, no temporaries
        np.multiply(planes, self._scale_rgb, out=target, casting="unsafe")
        np.subtract(target, self._offset_rgb, out=target)

    def tensor(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """A fresh 3×S×S input for one frame, and its Geometry."""
        out = self.new_buffer()
        geo = self(frame_bgr, out)
        return out[0], geo


def place_plane(plane: np.ndarray, geo: Geometry, interpolation: str = "area") -> np.ndarray:
    """A single-channel image (a ground-truth map, say) moved exactly as a frame of its size is:
    S×S float32, zeros outside the picture (letterbox bars)."""
    fx, fy, fw, fh = geo.frame_rect
    cx, cy, cw, ch = geo.content
    out = np.zeros((geo.input_size, geo.input_size), dtype=np.float32)
    region = np.asarray(plane[fy : fy + fh, fx : fx + fw], dtype=np.float32)
    out[cy : cy + ch, cx : cx + cw] = resize_picture(region, cw, ch, interpolation)
    return out


def frame_to_tensor(frame_bgr: np.ndarray, contract: InputContract) -> np.ndarray:
    """One BGR uint8 frame → its 3×S×S float32 model input under ``contract``."""
    return Preprocessor(contract).tensor(frame_bgr)[0]


def resize_picture(image: np.ndarray, width: int, height: int, interpolation: str = "area") -> np.ndarray:
    """Resize as the contract says: ``area`` shrinks anti-aliased, ``linear`` samples bilinearly."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if interpolation == "linear":
        return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR)
    return shrink(np.ascontiguousarray(image), width, height)


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
