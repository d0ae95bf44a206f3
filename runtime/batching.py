"""When the pipeline sends a batch, and in which order streams fill it: a plain policy, no threads.

A batch takes at most one frame per stream. It is sent when it is full (``batch_size`` frames, or
one from every stream still running, whichever is fewer) or ``timeout_ms`` after its first frame
arrived (nvstreammux's batched-push-timeout). Streams take turns at the front, so none starves when
there are more streams than batch slots.
"""


class BatchPolicy:
    def __init__(self, batch_size: int, timeout_ms: float) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if timeout_ms < 0:
            raise ValueError(f"batch timeout must be >= 0 ms, got {timeout_ms}")
        self.batch_size = int(batch_size)
        self.timeout_s = timeout_ms / 1000.0

    def order(self, running: list, turn: int) -> list:
        """``running`` rotated by ``turn``: the stream at the front changes with every batch."""
        if not running:
            return []
        shift = turn % len(running)
        return running[shift:] + running[:shift]

    def room(self, taken: int) -> bool:
        return taken < self.batch_size

    def send_now(self, taken: int, running: int, first_at: float | None, now: float) -> bool:
        """Full, or the oldest frame of the batch has waited ``timeout_ms``."""
        if taken == 0:
            return False
        return taken >= min(self.batch_size, running) or now >= first_at + self.timeout_s

    def wait_s(self, first_at: float | None, now: float, idle_s: float) -> float:
        """How long to wait for more frames before deciding again (``idle_s`` with an empty batch)."""
        return idle_s if first_at is None else max(first_at + self.timeout_s - now, 0.0)
