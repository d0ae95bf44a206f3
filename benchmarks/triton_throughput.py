"""Throughput of the Triton python-backend model against local ONNX Runtime, 1 and 4 clients, one run.

    python cli.py benchmark triton-throughput --repo REPO [--seconds 8]

REPO is what ``python cli.py export CKPT --format triton --out REPO`` wrote. A loopback tritonserver
from the nvidia-pytriton wheel serves ``wscnet_python``; every client sends one frame per request,
as a camera does, so any batch larger than 1 was formed by the server's dynamic batcher. The table
gives requests per second, client p50/p95 latency, and the batch sizes the server executed (its own
statistics, ``/v2/models/wscnet_python/stats``).
"""

import threading
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.measure import time_calls
from export.triton_repo import PYTHON_MODEL, PYTHON_THREADS
from export.triton_server import LocalTritonServer
from runtime.backends import open_backend


def run_clients(open_runner, clients: int, batch: np.ndarray, seconds: float) -> dict:
    """``clients`` threads, each timing its own runner for ``seconds``; requests/s and p50/p95 ms."""
    runners = [open_runner() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def client(index: int) -> None:
        latencies[index] = time_calls(runners[index], batch, warmup=3, duration=seconds)[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for runner in runners:
        runner.close()
    every = np.concatenate([np.asarray(lat) for lat in latencies])
    return {
        "requests_per_s": sum(len(lat) for lat in latencies) / seconds,
        "p50_ms": float(np.percentile(every, 50)),
        "p95_ms": float(np.percentile(every, 95)),
    }


def executed_batches(url_http: str) -> Counter:
    """Server-side executions per batch size, from Triton's statistics."""
    import tritonclient.http as client

    stats = client.InferenceServerClient(url_http).get_inference_statistics(PYTHON_MODEL)
    model = stats["model_stats"][0]
    return Counter({int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model.get("batch_stats", [])})


def run(repo: Path, seconds: float, client_counts: tuple[int, ...]) -> list[dict]:
    local_model = repo / "model.onnx"
    with open_backend(local_model, device="cpu", threads=PYTHON_THREADS) as probe:
        size = probe.metadata.input_size
    batch = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    rows = []
    with LocalTritonServer(repo, models=(PYTHON_MODEL,)) as server:
        grpc = f"triton://127.0.0.1:{server.grpc_port}/{PYTHON_MODEL}"
        http = f"127.0.0.1:{server.http_port}"
        for clients in client_counts:
            shared = open_backend(local_model, device="cpu", threads=PYTHON_THREADS)
            local = run_clients(lambda: _Unclosed(shared), clients, batch, seconds)
            shared.close()
            rows.append(
                {
                    "backend": f"local onnxruntime ({PYTHON_THREADS} threads, one session)",
                    "clients": clients,
                    **local,
                    "batches": "-",
                }
            )
            before = executed_batches(http)
            remote = run_clients(lambda: open_backend(grpc), clients, batch, seconds)
            formed = executed_batches(http) - before
            rows.append(
                {
                    "backend": "triton gRPC, python backend",
                    "clients": clients,
                    **remote,
                    "batches": ", ".join(f"{n}×b{size}" for size, n in sorted(formed.items())),
                }
            )
    return rows


class _Unclosed:
    """One shared local session for several client threads; the threads must not close it."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def infer(self, batch):
        return self.backend.infer(batch)

    def close(self) -> None:
        pass


def table(rows: list[dict]) -> str:
    lines = [
        "| back-end | clients | requests/s | p50 ms | p95 ms | server batches (count×size) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['backend']} | {r['clients']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['batches']} |"
        for r in rows
    ]
    return "\n".join(lines)


def print_triton_throughput(repo: Path, seconds: float, clients: tuple[int, ...]) -> list[dict]:
    """``python cli.py benchmark triton-throughput``: the table of requests/s per client count."""
    rows = run(repo, seconds, clients)
    print(table(rows))
    return rows
