"""OpenVINO against ONNX Runtime on the same files, batch 1, timed interleaved in one process.

    python cli.py benchmark openvino-vs-ort [--ckpt CKPT] [--arch resnet18] [--img-size 224]
        [--threads 1,2] [--rounds 60] [--warmup 5] [--out bench-results/openvino_vs_ort.json]

For the fused-op export and the ``--no-fused-op`` export of one checkpoint, each with its INT8
Q/DQ copy, every runner goes through ``runtime.backends.open_backend`` as the runtime uses it:
``ort`` and ``ort-int8`` (ONNX Runtime CPU), ``ov`` (OpenVINO, f32 hint), ``ov-bf16``,
``ov-int8`` (the Q/DQ file, float ops in f32) and ``ov-int8-bf16`` (its float ops in BF16). Beside them, ``openvino-direct`` is OpenVINO as
a user gets it without this runtime: its default settings (BF16 on CPUs that have it, the INT8
file's reductions left to its low-precision passes), called directly. The runners of one thread
count take turns call by call (``measure.time_interleaved``), so a shared CPU's load hits
them alike; ratios are of medians from the same rounds.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .export_latency import markdown_table, prepare_models
from .measure import summarise, time_interleaved

FILE_KINDS = {"fused": True, "no-fused-op": False}


class DirectOpenVino:
    """OpenVINO with its defaults (threads aside), compiled from the file and called directly."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino

        from runtime.backends.openvino_backend import executed_precision, read_onnx

        core = openvino.Core()
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        self.compiled = core.compile_model(read_onnx(core, Path(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = executed_precision(self.compiled)

    def infer(self, batch: np.ndarray):
        return self.request.infer({0: batch})


def open_runners(files: dict[str, Path], threads: int) -> tuple[dict, dict]:
    """(name → callable, name → what it ran) for one file kind at ``threads`` threads."""
    from runtime.backends import open_backend

    backends = {
        "ort": open_backend(files["ort-fp32"], device="cpu", threads=threads),
        "ov": open_backend(files["ort-fp32"], device="openvino", threads=threads),
        "ov-bf16": open_backend(files["ort-fp32"], device="openvino", threads=threads, precision="bf16"),
        "ort-int8": open_backend(files["ort-int8"], device="cpu", threads=threads),
        "ov-int8": open_backend(files["ort-int8"], device="openvino", threads=threads),
        "ov-int8-bf16": open_backend(files["ort-int8"], device="openvino", threads=threads, precision="bf16"),
        "openvino-direct": DirectOpenVino(files["ort-fp32"], threads),
        "openvino-direct-int8": DirectOpenVino(files["ort-int8"], threads),
    }
    ran = {
        name: getattr(b, "description", None) or f"openvino-direct[CPU,{b.precision}]" for name, b in backends.items()
    }
    return backends, ran


def run(ckpt: Path | None, arch: str, size: int, thread_counts: list[int], rounds: int, warmup: int) -> dict:
    results = {
        "arch": arch,
        "img_size": size,
        "batch": 1,
        "rounds": rounds,
        "warmup": warmup,
        "cpu_count": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "groups": [],
    }
    with tempfile.TemporaryDirectory(prefix="wscnet-ov-vs-ort-") as tmp:
        files = {}
        for kind, fused in FILE_KINDS.items():
            ckpt, files[kind] = prepare_models(ckpt, arch, size, Path(tmp) / kind, fused_op=fused, fp16=False)
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        for threads in thread_counts:
            for kind in FILE_KINDS:
                backends, ran = open_runners(files[kind], threads)
                runners = {name: (lambda b: lambda: b.infer(x))(b) for name, b in backends.items()}
                times = time_interleaved(runners, rounds=rounds, warmup=warmup)
                results["groups"].append(
                    {
                        "threads": threads,
                        "file": kind,
                        "ran": ran,
                        "stats": {name: summarise(samples) for name, samples in times.items()},
                    }
                )
                for backend in backends.values():
                    getattr(backend, "close", lambda: None)()
    results["load_average_end"] = list(os.getloadavg())
    return results


def best_paths(group: dict) -> dict:
    """Fastest ONNX Runtime and OpenVINO runner of a group (through the runtime), and their ratio."""
    stats = group["stats"]
    median = {name: s["median"] for name, s in stats.items()}
    ort = min(("ort", "ort-int8"), key=median.get)
    ov = min(("ov", "ov-bf16", "ov-int8", "ov-int8-bf16"), key=median.get)
    return {"best_ort": ort, "best_openvino": ov, "openvino_over_ort": median[ov] / median[ort]}


def print_openvino_vs_ort(
    ckpt: Path | None, arch: str, img_size: int, *, threads: list[int], rounds: int, warmup: int, out: Path
) -> dict:
    """``python cli.py benchmark openvino-vs-ort``: one table per (file, thread count), then the ratio."""
    from wscnet.atomic import atomic_write_text

    result = run(ckpt, arch, img_size, threads, rounds, warmup)
    for group in result["groups"]:
        group.update(best_paths(group))
        print(
            f"\n{result['arch']} @ {result['img_size']}, {group['file']} file, {group['threads']} threads, "
            f"{result['rounds']} interleaved rounds"
        )
        print(markdown_table(group["stats"], "ort", "ort-int8"))
        print("ran: " + "; ".join(f"{name} {what}" for name, what in group["ran"].items()))
        print(
            f"best OpenVINO {group['best_openvino']} / best ONNX Runtime {group['best_ort']}: "
            f"{group['openvino_over_ort']:.2f}"
        )
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(
        f"\nload average {result['load_average_start'][0]:.1f} at the start, "
        f"{result['load_average_end'][0]:.1f} at the end; wrote {out}"
    )
    return result
