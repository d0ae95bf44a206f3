"""Measure one (back-end, model file, batch) in a process of its own.

A fresh process per row gives each row a clean peak memory (the process's RSS high-water mark,
VmHWM): an ONNX Runtime row never imports torch, so its figure is what the lean runtime
needs, and one row's buffers never inflate the next. Usage (bench runs it)::

    python -m benchmarks.worker JOB.json RESULT.json
"""

import json
import resource
import sys
import traceback
from pathlib import Path

import numpy as np

from .measure import predict_in_batches, summarise, time_calls, timing_batch


def open_runner(engine: str, path: str, device: str, threads: int, precision: str | None = None):
    if engine == "torch":
        from .torch_runner import TorchRunner

        runner = TorchRunner(device=device, threads=threads)
        runner.load(path)
        return runner
    from runtime.backends import open_backend

    from .device_timing import DeviceTimed

    return DeviceTimed(open_backend(path, device=device, threads=threads, precision=precision))


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM).

    Not ``ru_maxrss``: Linux carries that across fork + exec, so a child of a process holding
    torch would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mem_mb(engine: str) -> float | None:
    if engine != "torch" or "torch" not in sys.modules:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_job(job: dict) -> dict:
    # K×3×S×S float32, pre-processed; mapped, so only the images in use count towards the peak
    images = np.load(job["images"], mmap_mode="r")
    runner = open_runner(job["engine"], job["path"], job["device"], job.get("threads", 0), job.get("precision"))
    try:
        batch = timing_batch(images, job["batch"])
        host, device = time_calls(
            runner,
            batch,
            warmup=job["warmup"],
            iters=job.get("iters"),
            duration=job.get("duration"),
            min_iters=job.get("min_iters", 1),
        )
        peak_mb = peak_rss_mb()  # the model, its runtime and one batch: before the check images
        if job.get("outputs"):  # the check images, once per model file
            np.savez(job["outputs"], **predict_in_batches(runner, images, job["batch"]))
        description = runner.description
        executed = getattr(runner, "executed_precision", None)
    finally:
        runner.close()
    return {
        "description": description,
        "executed_precision": executed,
        "iters": len(host),
        "host_ms": summarise(host),
        "device_ms": summarise(device) if device else None,
        "peak_mem_mb": peak_mb,
        "peak_gpu_mem_mb": peak_gpu_mem_mb(job["engine"]),
    }


def main(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    try:
        result = run_job(job)
    except Exception as exc:  # the row is reported as failed, with the reason, not lost
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]}
        if not getattr(exc, "user_facing", False):
            traceback.print_exc()
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
