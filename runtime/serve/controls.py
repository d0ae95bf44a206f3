"""Overlay settings that the page changes while the pipeline runs (read once per frame)."""

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
    """Thread-safe holder of the current OverlaySettings: the web page writes, the render thread reads."""

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        self._settings = settings or OverlaySettings()
        self._lock = threading.Lock()

    def current(self) -> OverlaySettings:
        return self._settings  # one reference read: an immutable object, always whole

    def update(self, changes: dict) -> OverlaySettings:
        """Apply a partial change, e.g. {"map": false}; ValueError names a bad key or value."""
        unknown = set(changes) - set(OverlaySettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown control(s): {', '.join(sorted(unknown))}")
        typed = {}
        for key, value in changes.items():
            if key == "map":
                if not isinstance(value, bool):
                    raise ValueError("map must be true or false")
                typed[key] = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                typed[key] = float(value)
            else:
                raise ValueError(f"{key} must be a number")
        with self._lock:
            self._settings = replace(self._settings, **typed)
            return self._settings
