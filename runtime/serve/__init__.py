"""Live view over HTTP for headless boxes: ``LiveServer`` (aiohttp; the ``serve`` extra).

The pipeline's side of the interface is small: ``server.publish(frame, record)`` once per frame
from the render thread, and ``server.controls.current()`` (opacity, smoothing, map on/off) read
once per frame. See runtime/README.md, "Watch it live".
"""

from .controls import Controls, OverlaySettings
from .info import model_info
from .server import LiveServer, parse_address

__all__ = ["Controls", "LiveServer", "OverlaySettings", "model_info", "parse_address"]
