"""Frames drawn with an earlier frame's prediction reuse its colour image, and only then."""

import numpy as np

from runtime.framing import ColourMemo
from runtime.overlay import map_to_frame_colors
from runtime.preprocess import plan_geometry


def test_the_same_map_is_coloured_once_and_a_changed_map_again():
    memo = ColourMemo(size=2)
    geometry = plan_geometry(160, 120, 64, "squash")
    sentiment_map = np.arange(16, dtype=np.float32).reshape(4, 4)
    first = memo(sentiment_map, geometry)
    np.testing.assert_array_equal(first, map_to_frame_colors(sentiment_map, geometry))
    assert memo(sentiment_map.copy(), geometry) is first  # equal values: remembered
    sentiment_map[0, 0] = 20.0  # changed in place (as a smoother does): coloured anew
    changed = memo(sentiment_map, geometry)
    assert changed is not first
    np.testing.assert_array_equal(changed, map_to_frame_colors(sentiment_map, geometry))
    other = plan_geometry(120, 160, 64, "crop")  # same map, another frame shape: its own colours
    assert memo(sentiment_map, other).shape == (120, 120, 3)
    assert len(memo._memo) <= 2  # bounded: cleared when full
