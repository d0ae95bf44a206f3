"""The one place where the runtime API meets the model's input contract and the overlay.

Frame → tensor (``runtime.preprocess.Preprocessor`` built from the model's ``InputContract``), the
sentiment map back onto the frame (``runtime.overlay.map_to_frame``) and drawing
(``runtime.overlay.Overlay``) all go through ``Framing``: nothing else in ``api.py`` /
``pipeline.py`` touches ``Preprocessor``, ``Geometry`` or ``Overlay``.
"""

import numpy as np

from .metadata import ModelMetadata
from .overlay import Overlay, map_to_frame, map_to_frame_colors
from .preprocess import Geometry, Preprocessor


class Framing:
    """``to_tensor`` fills one row of an input batch; ``map_on_frame`` and ``draw`` undo its geometry.

    ``resize``: None follows the model's input contract; a geometry name overrides it."""

    def __init__(self, metadata: ModelMetadata, resize: str | None = None) -> None:
        self.class_names = tuple(metadata.class_names)
        self.contract = metadata.contract_for(resize)
        self._views = [Preprocessor(self.contract.with_geometry(view)) for view in self.contract.views]
        self.per_frame = len(self._views)  # input rows one frame takes: one per view
        self._colours = ColourMemo()

    def new_batch(self, frames: int = 1) -> np.ndarray:
        """An input batch for ``frames`` frames (``per_frame`` rows each)."""
        return self._views[0].new_buffer(frames * self.per_frame)

    def rows(self, frame: int) -> slice:
        """The batch rows of the ``frame``-th frame."""
        return slice(frame * self.per_frame, (frame + 1) * self.per_frame)

    def to_tensor(self, frame_bgr: np.ndarray, batch: np.ndarray, row: int = 0) -> Geometry:
        """Write the frame's views into the rows of the ``row``-th frame; the first view's Geometry
        (where the map goes) is returned."""
        first = row * self.per_frame
        geometries = [pre(frame_bgr, batch, first + v) for v, pre in enumerate(self._views)]
        return geometries[0]

    def combine(self, outputs: dict[str, np.ndarray], frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probs, det_scores, h×w map) of the ``frame``-th frame: the scores of its views combined
        as the contract says (averaged, or those of its most confident view), the map of its first
        view (the one the geometry returned by ``to_tensor`` describes)."""
        rows = self.rows(frame)
        sentiment_map = outputs["sentiment_map"][rows.start, 0]
        if self.per_frame > 1 and self.contract.combine == "max_confidence":
            best = rows.start + int(np.argmax(outputs["probs"][rows].max(axis=1)))
            return outputs["probs"][best], outputs["det_scores"][best], sentiment_map
        return outputs["probs"][rows].mean(axis=0), outputs["det_scores"][rows].mean(axis=0), sentiment_map

    @staticmethod
    def map_on_frame(sentiment_map: np.ndarray, geometry: Geometry, frame_size: tuple[int, int]) -> np.ndarray:
        """The h×w map as a float32 H×W map over the frame, min–max scaled to [0, 1] (as drawn);
        NaN where the model saw nothing (outside a centre crop)."""
        shown = map_to_frame(sentiment_map, geometry)
        fx, fy, fw, fh = geometry.frame_rect
        width, height = frame_size
        if (fx, fy, fw, fh) == (0, 0, width, height):
            return shown
        on_frame = np.full((height, width), np.nan, dtype=np.float32)
        on_frame[fy : fy + fh, fx : fx + fw] = shown
        return on_frame

    def draw(
        self,
        frame: np.ndarray,
        probs: np.ndarray,
        sentiment_map: np.ndarray | None,
        geometry: Geometry,
        opacity: float = 0.45,
        readout: str = "",
    ) -> np.ndarray:
        """The overlay, in place: map (unless None or opacity 0), top-3 bars, readout."""
        opacity = min(max(float(opacity), 0.0), 1.0)
        overlay = Overlay(self.class_names, opacity, colours=self._colours)
        return overlay.draw(frame, probs, sentiment_map, geometry, readout)


class ColourMemo:
    """``map_to_frame_colors`` remembered for the last few (map, geometry) pairs: a frame drawn with
    the prediction of an earlier frame (one not inferred) reuses its colour image instead of
    upsampling and colouring the map again. Keyed by the map's values, so a map changed in place
    is coloured anew; each step is one dict operation, safe for render threads sharing it."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._memo: dict = {}

    def __call__(self, sentiment_map: np.ndarray, geometry: Geometry) -> np.ndarray:
        key = (sentiment_map.shape, sentiment_map.dtype.str, sentiment_map.tobytes(), geometry)
        colours = self._memo.get(key)
        if colours is None:
            if len(self._memo) >= self.size:
                self._memo.clear()  # a few streams' latest maps fit; anything older is stale
            colours = self._memo[key] = map_to_frame_colors(sentiment_map, geometry)
        return colours
