"""Live view over HTTP for headless boxes: ``LiveServer`` (aiohttp and prometheus_client: the ``serve`` extra).

Layers: ``address`` (where it listens) → ``hub`` (each stream's newest frame, record and events) →
``metrics`` (``/metrics``) → ``app`` (routes, access, viewers, the page) → ``server`` (its thread,
start and stop) → ``attach`` (the server as a ``Sink`` of a pipeline). See runtime/README.md.
"""

from ..errors import RuntimeUserError

try:
    import aiohttp  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise RuntimeUserError("--serve needs the serve extra: pip install -c constraints.txt '.[serve]'") from None

from .address import parse_address  # noqa: E402
from .info import model_info  # noqa: E402
from .server import LiveServer  # noqa: E402

__all__ = ["LiveServer", "model_info", "parse_address"]
