"""A function called every few seconds in a background thread, until stopped."""

import threading
from typing import Callable


class Periodic:
    def __init__(self, name: str, interval_s: float, tick: Callable[[], None]) -> None:
        self.interval_s, self.tick = interval_s, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()
