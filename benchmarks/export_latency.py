"""Batch-1 CPU latency of the exported models against PyTorch eager, measured in one run.

    python cli.py benchmark export-latency [--ckpt CKPT] [--arch resnet18] [--img-size 224]
        [--rounds 40] [--warmup 5] [--threads 1] [--out bench-results/export_latency.json]

Without ``--ckpt`` it trains a tiny checkpoint of ``--arch`` for two steps on synthetic images
(latency does not depend on the weights; INT8 calibration needs real activations). Every runner
gets the same number of intra-op threads (``--threads``, 1 by default). The runners
are timed interleaved, round by round, so that load from other processes hits them alike.
Prints a Markdown table (median / p90 ms, ratio to PyTorch eager and to ONNX Runtime FP32) and
writes the same figures as JSON. The rounds are ``benchmarks.measure.time_interleaved`` (the one
timing loop), the statistics ``measure.summarise``.
"""

import contextlib
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .measure import summarise, time_interleaved

TARGETS = {"ort-fp32 / torch": 0.6, "ort-int8 / ort-fp32": 0.5}


def markdown_table(stats: dict[str, dict[str, float]], baseline: str, second: str | None = None) -> str:
    head = f"| runner | median ms | p90 ms | min ms | × {baseline} |" + (f" × {second} |" if second else "")
    rule = "|---|---:|---:|---:|---:|" + ("---:|" if second else "")
    rows = [head, rule]
    for name, s in stats.items():
        row = (
            f"| {name} | {s['median']:.2f} | {s['p90']:.2f} | {s['min']:.2f} | "
            f"{s['median'] / stats[baseline]['median']:.2f} |"
        )
        if second:
            row += f" {s['median'] / stats[second]['median']:.2f} |"
        rows.append(row)
    return "\n".join(rows)


def prepare_models(
    ckpt: Path | None, arch: str, size: int, work: Path, *, fused_op: bool = True, fp16: bool = True
) -> tuple[Path, dict[str, Path]]:
    """The checkpoint (a tiny trained one unless given) and its FP32, INT8 (and FP16) ONNX files,
    made by the export pipeline."""
    from export.exporter import ExportRequest, run_export
    from wscnet.tiny_model import make_trained_checkpoint, write_image_folder

    if ckpt is None:
        ckpt = make_trained_checkpoint(work / "ckpt.pt", arch=arch, size=size, steps=2)
    calib = write_image_folder(work / "calib", num_classes=6, per_class=4, size=size, seed=1)
    req = ExportRequest(
        ckpt,
        work,
        name="model" if fused_op else "model-no-fused-op",
        img_size=size,
        fused_op=fused_op,
        fp16=fp16,
        int8=True,
        calib=calib,
        calib_n=24,
        parity=False,
        overwrite=True,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints its histogram steps
        run_export(req, echo=lambda line: None)
    models = {"ort-fp32": req.file("fp32"), "ort-int8": req.file("int8")}
    if fp16:
        models["ort-fp16"] = req.file("fp16")
    return ckpt, models


def run(ckpt: Path | None, arch: str, size: int, rounds: int, warmup: int, threads: int, with_fp16: bool) -> dict:
    import torch

    from export.onnx_export import DeployModel
    from runtime.backends import open_backend
    from wscnet.checkpoint import load_checkpoint

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="wscnet-export-latency-") as tmp:
        ckpt, models = prepare_models(ckpt, arch, size, Path(tmp))
        model, meta = load_checkpoint(ckpt)
        reference = DeployModel(model).eval()
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        xt = torch.from_numpy(x)

        def torch_eager():
            with torch.inference_mode():
                reference(xt)

        runners: dict[str, Callable[[], object]] = {"torch-eager": torch_eager}
        for name, path in models.items():
            if name == "ort-fp16" and not with_fp16:
                continue
            backend = open_backend(path, device="cpu", threads=threads)
            runners[name] = (lambda b: lambda: b.infer(x))(backend)
        times = time_interleaved(runners, rounds=rounds, warmup=warmup)
        sizes = {name: path.stat().st_size / 2**20 for name, path in models.items()}
    stats = {name: summarise(samples) for name, samples in times.items()}
    ratios = {
        "ort-fp32 / torch": stats["ort-fp32"]["median"] / stats["torch-eager"]["median"],
        "ort-int8 / ort-fp32": stats["ort-int8"]["median"] / stats["ort-fp32"]["median"],
    }
    return {
        "arch": meta["model_config"]["arch"],
        "img_size": size,
        "batch": 1,
        "threads": threads,
        "rounds": rounds,
        "warmup": warmup,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "versions": _versions(),
        "stats": stats,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": {k: ratios[k] <= v for k, v in TARGETS.items()},
        "model_mb": sizes,
    }


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    return {"torch": str(torch.__version__), "onnxruntime": onnxruntime.__version__}


def print_export_latency(
    ckpt: Path | None, arch: str, img_size: int, *, rounds: int, warmup: int, threads: int, fp16: bool, out: Path
) -> dict:
    """``python cli.py benchmark export-latency``: the table and the ratios against their targets."""
    from wscnet.atomic import atomic_write_text

    result = run(ckpt, arch, img_size, rounds, warmup, threads, fp16)
    print(
        f"{result['arch']} @ {result['img_size']}, batch 1, {result['threads']} threads, "
        f"{result['rounds']} interleaved rounds (load average {result['load_average'][0]:.1f})\n"
    )
    print(markdown_table(result["stats"], "torch-eager", "ort-fp32"))
    for name, ratio in result["ratios"].items():
        verdict = "met" if result["targets_met"][name] else "NOT met"
        print(f"\n{name}: {ratio:.2f} (target <= {TARGETS[name]}, {verdict})", end="")
    print()
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result
