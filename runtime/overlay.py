"""Draw the sentiment map, the top-3 labels and an FPS / latency readout onto a BGR frame, in place."""

import cv2
import numpy as np

from .preprocess import Geometry

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _map_content(sentiment_map: np.ndarray, geo: Geometry) -> tuple[np.ndarray, float, float]:
    """The map upsampled to the S×S input, letterbox bars dropped, with its min and max."""
    s = geo.input_size
    cx, cy, cw, ch = geo.content
    full = cv2.resize(sentiment_map.astype(np.float32, copy=False), (s, s), interpolation=cv2.INTER_LINEAR)
    content = full[cy : cy + ch, cx : cx + cw]
    return content, float(content.min()), float(content.max())


def map_to_frame(sentiment_map: np.ndarray, geo: Geometry) -> np.ndarray:
    """h×w map → float32 map over the frame region it covers (geo.frame_rect), min–max to [0, 1]."""
    content, lo, hi = _map_content(sentiment_map, geo)
    _, _, fw, fh = geo.frame_rect
    return cv2.resize((content - lo) / max(hi - lo, 1e-6), (fw, fh), interpolation=cv2.INTER_LINEAR)


def map_to_frame_colors(sentiment_map: np.ndarray, geo: Geometry) -> np.ndarray:
    """h×w map → colour-mapped BGR image of the frame region it covers (geo.frame_rect)."""
    content, lo, hi = _map_content(sentiment_map, geo)
    span = max(hi - lo, 1e-6)
    scaled = cv2.convertScaleAbs(content, alpha=255.0 / span, beta=-lo * 255.0 / span)
    colours = cv2.applyColorMap(scaled, cv2.COLORMAP_JET)  # at model resolution: cheap
    _, _, fw, fh = geo.frame_rect
    return cv2.resize(colours, (fw, fh), interpolation=cv2.INTER_LINEAR)


class Overlay:
    def __init__(self, class_names, opacity: float = 0.45, top_k: int = 3, colours=map_to_frame_colors) -> None:
        """``colours(sentiment_map, geometry)``: the map's colour image over the frame region
        (``map_to_frame_colors``, or a caller's memo of it)."""
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {opacity}")
        self.class_names = list(class_names)
        self.opacity = opacity
        self.top_k = min(top_k, len(self.class_names))
        self.colours = colours

    def draw(
        self, frame: np.ndarray, probs: np.ndarray, sentiment_map: np.ndarray | None, geo: Geometry, readout: str = ""
    ) -> np.ndarray:
        if sentiment_map is not None and self.opacity > 0:
            self._blend_map(frame, sentiment_map, geo)
        if self.top_k:
            self._draw_labels(frame, probs)
        if readout:
            self._draw_readout(frame, readout)
        return frame

    def _blend_map(self, frame: np.ndarray, sentiment_map: np.ndarray, geo: Geometry) -> None:
        fx, fy, fw, fh = geo.frame_rect
        region = frame[fy : fy + fh, fx : fx + fw]
        colours = self.colours(sentiment_map, geo)
        if region.flags.c_contiguous:
            cv2.addWeighted(colours, self.opacity, region, 1.0 - self.opacity, 0.0, dst=region)
        else:  # a centre-crop region is a strided view, which OpenCV will not write into
            region[...] = cv2.addWeighted(colours, self.opacity, region, 1.0 - self.opacity, 0.0)

    def _draw_labels(self, frame: np.ndarray, probs: np.ndarray) -> None:
        scale = max(0.4, frame.shape[0] / 900)
        thickness = max(1, round(scale * 2))
        line = int(30 * scale) + 6
        order = np.argsort(probs)[::-1][: self.top_k]
        box_w = int(260 * scale)
        _shade(frame, 0, 0, box_w, line * self.top_k + 8)
        for row, c in enumerate(order):
            y = 4 + line * row
            p = float(probs[c])
            cv2.rectangle(frame, (4, y + 2), (4 + int((box_w - 8) * p), y + line - 4), (0, 160, 255), -1)
            text = f"{self.class_names[c]} {p:.2f}"
            cv2.putText(frame, text, (8, y + line - 10), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)

    def _draw_readout(self, frame: np.ndarray, text: str) -> None:
        h = frame.shape[0]
        scale = max(0.35, h / 1200)
        (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
        _shade(frame, 0, h - th - 12, tw + 12, th + 12)
        cv2.putText(frame, text, (6, h - 6), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _shade(frame: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Darken a box so white text stays readable on any picture."""
    box = frame[max(y, 0) : y + h, max(x, 0) : x + w]
    np.right_shift(box, 1, out=box)
