"""What a viewer may change while streams run: the overlay's opacity, smoothing and map on/off.

One ``Controls`` holds the current ``OverlaySettings`` (immutable, swapped whole): the render
threads read it once per frame, the live page's ``POST /controls`` updates it. Streams may share
one (the live page controls all of them) or have their own.
"""

import threading
from dataclasses import asdict, dataclass, replace

MAX_SMOOTHING = 0.99  # an EMA factor of 1 would freeze the overlay for ever


@dataclass(frozen=True)
class OverlaySettings:
    opacity: float = 0.45  # of the colour-mapped sentiment map
    smoothing: float = 0.0  # EMA factor of the overlay's probabilities and map
    map: bool = True  # draw the sentiment map at all

    def __post_init__(self) -> None:
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity}")
        if not 0.0 <= self.smoothing <= MAX_SMOOTHING:
            raise ValueError(f"smoothing must be in [0, {MAX_SMOOTHING}], got {self.smoothing}")

    def as_dict(self) -> dict:
        return asdict(self)


class Controls:
    """Thread-safe holder of the current ``OverlaySettings``; ``Controls(map=False)`` starts with those."""

    def __init__(self, settings: OverlaySettings | None = None, **fields) -> None:
        self._settings = replace(settings or OverlaySettings(), **fields)
        self._lock = threading.Lock()

    def current(self) -> OverlaySettings:
        return self._settings  # one reference read: an immutable object, always whole

    def update(self, changes: dict) -> OverlaySettings:
        """Apply a partial change, e.g. {"map": false}; ValueError names a bad key or value."""
        unknown = set(changes) - set(OverlaySettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown control(s): {', '.join(sorted(unknown))}")
        typed = {key: _typed(key, value) for key, value in changes.items()}
        with self._lock:
            self._settings = replace(self._settings, **typed)
            return self._settings


def _typed(key: str, value):
    if key == "map":
        if not isinstance(value, bool):
            raise ValueError("map must be true or false")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{key} must be a number")
