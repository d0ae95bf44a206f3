"""Running as a service: stop cleanly on SIGINT / SIGTERM, and tell systemd the pipeline is alive.

``sd_notify`` speaks systemd's notification protocol (a datagram to ``$NOTIFY_SOCKET``) with the
standard library: ``READY=1`` once the pipeline runs, ``WATCHDOG=1`` while its batcher keeps
turning, so ``WatchdogSec=`` restarts a hung pipeline. Without ``$NOTIFY_SOCKET`` it does nothing.
"""

import contextlib
import os
import signal
import socket
import threading

from .errors import log
from .periodic import Periodic


def sd_notify(message: str) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd; False when not run under a notifying unit."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.debug(f"sd_notify: {exc}")
        return False


def watchdog_interval_s() -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` (the interval to send ``WATCHDOG=1`` at), or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Heartbeat(Periodic):
    """Sends ``WATCHDOG=1`` every ``interval_s`` while ``alive()`` is true (the pipeline's batcher
    has turned recently); a hung pipeline stops the heartbeat and systemd restarts the service."""

    def __init__(self, alive, interval_s: float) -> None:
        super().__init__("heartbeat", interval_s, self._beat)
        self.alive, self.beats = alive, 0

    def _beat(self) -> None:
        if self.alive(self.interval_s * 2):
            self.beats += sd_notify("WATCHDOG=1")


@contextlib.contextmanager
def service_session(pipeline):
    """SIGINT / SIGTERM stop ``pipeline`` cleanly (main thread only); systemd hears READY and heartbeats."""
    restore = _stop_on_signals(pipeline)
    interval = watchdog_interval_s()
    heartbeat = Heartbeat(pipeline.alive, interval).start() if interval else None
    sd_notify("READY=1")
    try:
        yield
    finally:
        sd_notify("STOPPING=1")
        if heartbeat is not None:
            heartbeat.stop()
        restore()


def _stop_on_signals(pipeline):
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def request_stop(signum, _frame) -> None:
        pipeline.request_stop()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
