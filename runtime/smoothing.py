"""Exponential moving average of probabilities and sentiment map, so the overlay does not flicker."""

import numpy as np


class EmaSmoother:
    """s ← A·s + (1 − A)·x. A = 0 passes values through; the first value starts the average."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smoothing factor must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self._state: dict[str, np.ndarray] = {}

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        previous = self._state.get(name)
        if self.alpha == 0.0 or previous is None or previous.shape != value.shape:
            self._state[name] = value.astype(np.float32, copy=True)
        else:
            previous *= self.alpha
            previous += (1.0 - self.alpha) * value
        return self._state[name]

    def reset(self) -> None:
        self._state.clear()
