"""The one timing loop of the benchmarks (``time_interleaved``: warm-up, then timed rounds), its
statistics, and how bench feeds a back-end.

The loop only makes the calls it is given; ``time_calls`` times ``runner.infer(batch)`` and
never asks which back-end it holds. A runner that can time its device work keeps
``last_device_ms`` after each call (the GPU compute time, without copies); the host latency
measured here always includes the copies, as trtexec's "Latency" does.
"""

import time
from typing import Callable

import numpy as np

STAT_NAMES = ("min", "mean", "median", "p90", "p99", "max")  # what ``summarise`` reports


def time_interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    warmup: int,
    rounds: int | None = None,
    duration: float | None = None,
    min_rounds: int = 1,
    after: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Per call, its latencies in ms. After ``warmup`` untimed calls each, every round times each
    call once, in turn, so load from other processes hits them alike; ``after(name)`` runs after
    each timed call, outside the timing.

    Stops after ``rounds`` rounds, or once ``duration`` seconds have passed and at least
    ``min_rounds`` rounds were made.
    """
    if (rounds is None) == (duration is None):
        raise ValueError("give exactly one of rounds and duration")
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    began, done = time.perf_counter(), 0
    while rounds is None or done < rounds:
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
            if after is not None:
                after(name)
        done += 1
        if duration is not None and time.perf_counter() - began >= duration and done >= min_rounds:
            break
    return times


def time_calls(
    runner,
    batch: np.ndarray,
    *,
    warmup: int,
    iters: int | None = None,
    duration: float | None = None,
    min_iters: int = 1,
) -> tuple[list[float], list[float]]:
    """(host latencies ms, device latencies ms) of ``runner.infer(batch)`` calls after ``warmup``
    untimed ones (``time_interleaved`` with one call); stops as ``time_interleaved`` does."""
    device: list[float] = []

    def record_device(_name: str) -> None:
        device_ms = getattr(runner, "last_device_ms", None)
        if device_ms is not None:
            device.append(float(device_ms))

    host = time_interleaved(
        {"infer": lambda: runner.infer(batch)},
        warmup=warmup,
        rounds=iters,
        duration=duration,
        min_rounds=min_iters,
        after=record_device,
    )["infer"]
    return host, device


def summarise(latencies_ms: list[float]) -> dict[str, float]:
    """min / mean / median / p90 / p99 / max of the calls, in ms."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "min": float(values.min()),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


def predict_in_batches(runner, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Every output for every image, fed ``batch`` images at a time (memory stays bounded); a
    fixed-batch back-end pads and slices inside its own ``infer``."""
    parts = [
        runner.infer(np.ascontiguousarray(images[start : start + batch])) for start in range(0, len(images), batch)
    ]
    return {name: np.concatenate([np.asarray(part[name], dtype=np.float32) for part in parts]) for name in parts[0]}


def timing_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """N×3×S×S of real images (repeated when there are fewer than N)."""
    index = np.arange(batch) % len(images)
    return np.ascontiguousarray(images[index])
