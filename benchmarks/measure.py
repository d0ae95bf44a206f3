"""One measuring loop for every back-end: warm-up, then timed calls, then the statistics.

The loop only calls ``runner.infer(batch)``; it never asks which back-end it holds. A runner
that can time its device work keeps ``last_device_ms`` after each call (the GPU compute time,
without copies); the host latency measured here always includes the copies, as trtexec's
"Latency" does.
"""

import time

import numpy as np

STAT_NAMES = ("min", "mean", "median", "p90", "p99", "max")


def time_calls(
    runner,
    batch: np.ndarray,
    *,
    warmup: int,
    iters: int | None = None,
    duration: float | None = None,
    min_iters: int = 1,
) -> tuple[list[float], list[float]]:
    """(host latencies ms, device latencies ms) of calls after ``warmup`` untimed ones.

    Stops after ``iters`` calls, or once ``duration`` seconds have passed and at least
    ``min_iters`` calls were made.
    """
    if (iters is None) == (duration is None):
        raise ValueError("give exactly one of iters and duration")
    for _ in range(warmup):
        runner.infer(batch)
    host, device = [], []
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        runner.infer(batch)
        end = time.perf_counter()
        host.append((end - start) * 1e3)
        device_ms = getattr(runner, "last_device_ms", None)
        if device_ms is not None:
            device.append(float(device_ms))
        if iters is not None and len(host) >= iters:
            break
        if duration is not None and end - began >= duration and len(host) >= min_iters:
            break
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
    """Every output for every image, fed in batches of exactly ``batch`` (the last one padded)."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        real = len(chunk)
        if real < batch:  # a fixed-batch model (engine, static ONNX) needs the full batch
            pad = np.repeat(chunk[-1:], batch - real, axis=0)
            chunk = np.concatenate([chunk, pad])
        for name, value in runner.infer(np.ascontiguousarray(chunk)).items():
            parts.setdefault(name, []).append(np.asarray(value, dtype=np.float32)[:real])
    return {name: np.concatenate(values) for name, values in parts.items()}


def timing_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """N×3×S×S of real images (repeated when there are fewer than N)."""
    index = np.arange(batch) % len(images)
    return np.ascontiguousarray(images[index])
