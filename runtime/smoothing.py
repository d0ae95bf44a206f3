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
