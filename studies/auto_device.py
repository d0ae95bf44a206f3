"""Does ``--device auto`` pick the fastest CPU back-end? Its probe, then every candidate timed
again in the same run, in interleaved rounds (``benchmarks.measure.time_interleaved``).

For each model: ``open_backend(model, threads=T)`` with an empty cache (so it probes), its pick
and probe times; then each candidate forced (``--device cpu`` = ONNX Runtime, ``openvino`` FP32,
``openvino`` BF16 where the CPU has it) on one frame's input rows, and which was fastest.

    python cli.py study auto-device MODEL.onnx [MODEL.onnx ...] [--threads 2] [--rounds 200]

Without models: the reference resnet18 at 224 px, FP32 and INT8 (``benchmarks.video_pipeline``).
"""

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.measure import time_interleaved
from runtime.backends import open_backend
from runtime.backends.probe import CACHE_ENV, TIE_SHARE, candidates, probe_batch


def probe_pick(model: Path, threads: int) -> dict:
    """What auto picks with an empty cache (the probe runs)."""
    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[CACHE_ENV] = cache
        try:
            with open_backend(model, threads=threads) as backend:
                return dict(backend.choice)
        finally:
            if previous is None:
                del os.environ[CACHE_ENV]
            else:
                os.environ[CACHE_ENV] = previous


def timed_candidates(model: Path, threads: int, rounds: int) -> dict[str, float]:
    """Median ms per frame of every candidate, forced, timed in turns."""
    backends = {}
    try:
        for candidate in candidates():
            backends[candidate.name] = open_backend(
                model, device=candidate.device, threads=threads, precision=candidate.precision
            )
        batch, rows = probe_batch(next(iter(backends.values())))
        frame = batch[:rows]
        calls = {name: (lambda b=backend: b.infer(frame)) for name, backend in backends.items()}
        times = time_interleaved(calls, warmup=5, rounds=rounds)
    finally:
        for backend in backends.values():
            backend.close()
    return {name: float(np.median(t)) for name, t in times.items()}


def compare(model: Path, threads: int, rounds: int) -> dict:
    pick = probe_pick(model, threads)
    measured = timed_candidates(model, threads, rounds)
    allowed = [name for name in measured if name not in pick["rejected"]]  # those matching ONNX Runtime
    fastest = min(allowed, key=measured.get)
    # a pick within the probe's tie share of the fastest is as good (the probe prefers ONNX Runtime then)
    tie = measured[pick["device"]] <= measured[fastest] * (1 + TIE_SHARE)
    return {
        "model": str(model),
        "threads": threads,
        "pick": pick["device"],
        "probe_ms": pick["times_ms"],
        "rejected": pick["rejected"],
        "measured_ms": measured,
        "fastest": fastest,
        "pick_is_fastest": pick["device"] == fastest,
        "pick_within_tie": tie,
    }


def default_models() -> list[Path]:
    from benchmarks.video_pipeline import DEFAULT_WORKDIR, default_int8_model

    int8 = default_int8_model()
    return [Path(DEFAULT_WORKDIR) / int8.name.replace(".int8.onnx", ".onnx"), int8]


def markdown(results: list[dict]) -> str:
    names = sorted({name for r in results for name in r["measured_ms"]})
    lines = [
        "| model | threads | "
        + " | ".join(f"{n} ms (probe / timed)" for n in names)
        + f" | pick | fastest timed | same | within {TIE_SHARE:.0%} |",
        "|---|---:|" + "---:|" * len(names) + "---|---|---|---|",
    ]
    for r in results:
        cells = " | ".join(f"{r['probe_ms'].get(n, float('nan')):.2f} / {r['measured_ms'][n]:.2f}" for n in names)
        lines.append(
            f"| {Path(r['model']).name} | {r['threads']} | {cells} | {r['pick']} | {r['fastest']} | "
            f"{'yes' if r['pick_is_fastest'] else 'no'} | {'yes' if r['pick_within_tie'] else 'no'} |"
        )
    return "\n".join(lines)


def run_auto_device(models: list[Path], threads: list[int], rounds: int) -> list[dict]:
    results = [compare(model, t, rounds) for model in (models or default_models()) for t in threads]
    print(markdown(results))
    return results
