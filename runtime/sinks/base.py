"""The one output interface of the pipeline: every place a stream's results go is a ``Sink``."""

import numpy as np

from ..events import Event


class Sink:
    """Where a stream's overlaid frames, records and events go.

    The pipeline calls ``write`` once per frame and ``event`` once per event of the streams the sink
    is attached to, from that stream's render thread, and ``close`` once, after the last stream
    holding the sink has ended. ``prediction.to_dict()`` is the frame's record. A sink must not
    block inference: a slow consumer keeps a bounded queue and counts what it drops (``counters``).
    """

    name = "sink"

    def write(self, frame: np.ndarray, prediction) -> None:
        """One overlaid BGR frame (the sink must not change it) and its ``Prediction``."""

    def event(self, event: Event) -> None:
        """An event of one of the streams this sink serves."""

    def counters(self) -> dict[str, int]:
        """Totals worth exporting (``/metrics``): written, dropped, failed, …"""
        return {}

    def close(self) -> None:
        """Finish: files complete and in place, connections closed. Called once."""
