"""Exponential moving average of probabilities and sentiment map, so the overlay does not flicker."""

import numpy as np


class EmaSmoother:
    """s ← A·s + (1 − A)·x. A = 0 passes values through; the first value starts the average."""

    def __init__(self, factor: float) -> None:
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"smoothing factor must be in [0, 1), got {factor}")
        self.factor = factor
        self._state: dict[str, np.ndarray] = {}

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        previous = self._state.get(name)
        if self.factor == 0.0 or previous is None or previous.shape != value.shape:
            self._state[name] = value.astype(np.float32, copy=True)
        else:
            previous *= self.factor
            previous += (1.0 - self.factor) * value
        return self._state[name]


class RateMeter:
    """Events per second, smoothed: ``tick()`` at each event returns the current rate (an EMA of the
    instantaneous rates, weight ``keep`` on the previous figure)."""

    def __init__(self, keep: float = 0.9) -> None:
        self.keep = keep
        self.rate = 0.0
        self._last: float | None = None

    def tick(self, now: float) -> float:
        if self._last is not None:
            instant = 1.0 / max(now - self._last, 1e-6)
            self.rate = instant if self.rate == 0.0 else self.keep * self.rate + (1.0 - self.keep) * instant
        self._last = now
        return self.rate
