"""An on-screen window showing every stream's newest overlaid frame in one mosaic."""

import os
import platform
import re
import threading
import time

import cv2
import numpy as np

from ..errors import log
from ..mosaic import Mosaic
from .base import Sink

GUI_EXTRA = "gui"


def gui_opencv() -> bool:
    """This OpenCV build can open windows (the PyPI ``opencv-python-headless`` cannot)."""
    return re.search(r"GUI:\s+NONE", cv2.getBuildInformation()) is None


def screen_present() -> bool:
    """A screen to draw on: on Linux only with X11 or Wayland."""
    return platform.system() != "Linux" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def display_available() -> bool:
    """A screen, and an OpenCV that can draw on it."""
    return screen_present() and gui_opencv()


class MosaicSink(Sink):
    """Keeps every stream's newest overlaid frame in one ``Mosaic`` (``streams``: (name, (width, height)))."""

    name = "mosaic"

    def __init__(self, streams: list[tuple[str, tuple[int, int]]]) -> None:
        self.tiles = {name: i for i, (name, _) in enumerate(streams)}
        self.mosaic = Mosaic([size for _, size in streams])

    def write(self, frame: np.ndarray, prediction) -> None:
        self.mosaic.put(self.tiles.get(prediction.stream, 0), frame)


class WindowSink(MosaicSink):
    """The mosaic on screen; ``on_quit`` is called when the viewer presses q or Esc. The window lives
    in a thread of its own (OpenCV's GUI wants one)."""

    name = "window"

    def __init__(self, streams: list[tuple[str, tuple[int, int]]], on_quit, title: str = "wscnet-edge") -> None:
        super().__init__(streams)
        self.title, self.on_quit = title, on_quit
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._show, name="window", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2.0)

    def _show(self) -> None:
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            log.warning(f"no on-screen window ({str(exc).strip().splitlines()[-1]}); carrying on without one")
            return
        shown = -1
        while not self._closing.is_set():
            if self.mosaic.version == shown:
                time.sleep(0.005)
            else:
                shown = self.mosaic.version
                cv2.imshow(self.title, self.mosaic.image())
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                self.on_quit()
                break
        cv2.destroyWindow(self.title)
