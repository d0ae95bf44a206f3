"""The shared part of every publisher: a bounded queue and one worker thread.

The render thread only ever calls ``offer`` (``put_nowait``): when the queue is full the event is
dropped and counted, so a broker or a receiver that is slow, down or hanging never holds up
inference. The worker delivers the events in order (``deliver``, written by each publisher).
"""

import queue
import threading
import time
from collections import Counter

from ..errors import log
from ..events import Event
from ..sinks.base import Sink

DEFAULT_QUEUE = 1000
DRAIN_S = 5.0  # at close, time left to deliver what is queued; the rest is counted as dropped


def backoff_delays(first_s: float, cap_s: float):
    """first_s, 2·first_s, 4·first_s, … capped at cap_s, for ever."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2.0, cap_s)


class QueuedPublisher(Sink):
    """A sink whose events go out from a worker thread. Counters: ``queued``, ``sent``, ``dropped``
    (the queue was full, or the run ended before it could be delivered), ``failed`` (given up after
    the retries), ``retries``."""

    name = "publisher"

    def __init__(self, capacity: int = DEFAULT_QUEUE, drain_s: float = DRAIN_S) -> None:
        if capacity < 1:
            raise ValueError(f"a publisher's queue needs room for at least one event, got {capacity}")
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.counts: Counter = Counter({"queued": 0, "sent": 0, "dropped": 0, "failed": 0, "retries": 0})
        self.drain_s = drain_s
        self.closing = threading.Event()  # stop taking events, deliver what is queued
        self.abandon = threading.Event()  # stop delivering: the drain time is over
        self._lock = threading.Lock()
        self._overflowing = False
        self._worker = threading.Thread(target=self._work, name=f"{self.name}-worker", daemon=True)
        self._worker.start()

    # ---- Sink ----------------------------------------------------------------------------------
    def event(self, event: Event) -> None:
        self.offer(event)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        self.closing.set()
        self._worker.join(self.drain_s)
        self.abandon.set()
        self._worker.join(self.drain_s)
        left = self.queue.qsize()
        if left:
            self.count("dropped", left)
        self.finish()
        log.info(
            f"{self.describe()}: {self.counts['sent']} event(s) sent, {self.counts['dropped']} dropped, "
            f"{self.counts['failed']} failed"
        )

    # ---- what publishers use ---------------------------------------------------------------------
    def offer(self, item) -> bool:
        """Queue ``item`` for the worker without waiting; False (and counted) when the queue is full."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.count("dropped")
            if not self._overflowing:
                self._overflowing = True
                log.warning(f"{self.describe()}: the queue is full; dropping events until it drains")
            return False
        self._overflowing = False
        self.count("queued")
        return True

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (a backoff); False when the publisher must stop delivering instead."""
        return not self.abandon.wait(seconds)

    def deliver(self, item) -> None:
        """Send one item; count it as ``sent``, ``failed`` or ``dropped``."""
        raise NotImplementedError

    def finish(self) -> None:
        """Close connections (after the worker has stopped)."""

    def describe(self) -> str:
        return self.name

    # ---- the worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self.abandon.is_set():
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                if self.closing.is_set():
                    return
                continue
            started = time.monotonic()
            try:
                self.deliver(item)
            except Exception as exc:  # a publisher's bug must not end the run; the event is lost
                self.count("failed")
                log.warning(
                    f"{self.describe()}: could not deliver an event ({exc}) after {time.monotonic() - started:.1f} s"
                )
