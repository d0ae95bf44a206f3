"""Which layers INT8 export keeps in float, and how to calibrate: the measurement behind
``export.int8.float_layout``.

For each checkpoint the FP32 ONNX model is exported once, then quantized with every float
layout (``export.int8.FLOAT_LAYOUTS``) × calibration method; each variant gets the parity check
on held-out images and a batch-1 ONNX Runtime latency on one of them.

    python cli.py study int8-layouts runs/m/mobilenet_v3_small/best.pt --calib runs/m/data \\
        --heldout runs/m/heldout --out runs/int8-layouts
"""

import json
import tempfile
from pathlib import Path

from wscnet.atomic import atomic_write_text


def measure_variant(
    fp32: Path, ckpt: Path, out: Path, calib: Path, heldout: Path, layout: str, method: str, calib_n: int, parity_n: int
) -> dict:
    import onnx

    from export.int8 import float_nodes, quantize_int8
    from export.parity import run_parity

    model = out / f"int8-{layout}-{method}.onnx"
    quantize_int8(fp32, model, calib, n=calib_n, method=method, keep_float=layout)
    report = run_parity(model, ckpt, heldout, n=parity_n, progress=False)
    return {
        "layout": layout,
        "method": method,
        "float_convs": len(float_nodes(onnx.load(str(fp32)), layout)),
        "top1_agreement": report["top1_agreement"],
        "det_top1_agreement": report["det_top1_agreement"],
        "map_correlation": report["map_correlation"],
        "probs_max_abs": report["outputs"]["probs"]["max_abs"],
        "passed": report["passed"],
        "size_mb": model.stat().st_size / 1e6,
        "median_ms": batch1_latency(model, heldout),
    }


def batch1_latency(model: Path, heldout: Path) -> float:
    """Median ms of batch-1 calls (1 intra-op thread) on a held-out image."""
    from benchmarks.measure import summarise, time_calls
    from export.images import find_images, load_batch
    from runtime.backends import open_backend

    backend = open_backend(model, device="cpu")
    meta = backend.metadata
    batch = load_batch(find_images(heldout, 1), meta.contract)
    host, _ = time_calls(backend, batch, warmup=3, iters=30)
    backend.close()
    return summarise(host)["median"]


def run_int8_layouts(
    checkpoints: list[Path],
    *,
    calib: Path,
    heldout: Path,
    out: Path,
    layout: list[str] | None,
    method: list[str],
    calib_n: int,
    parity_n: int,
) -> None:
    from export.int8 import FLOAT_LAYOUTS
    from export.onnx_export import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for ckpt in checkpoints:
        with tempfile.TemporaryDirectory(prefix="wscnet-layouts-") as tmp:
            fp32 = export_onnx(ckpt, Path(tmp) / "model.onnx")
            for name in layout or FLOAT_LAYOUTS:
                for how in method:
                    row = measure_variant(fp32, ckpt, Path(tmp), calib, heldout, name, how, calib_n, parity_n)
                    rows.append({"checkpoint": str(ckpt), **row})
                    atomic_write_text(out / "int8-layouts.json", json.dumps(rows, indent=2) + "\n")
                    print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| checkpoint | float layout | calibration | convs in float | top-1 agree | det top-1 "
        "| map corr | probs max abs | parity | MB | batch-1 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['checkpoint']).parent.name} | {r['layout']} | {r['method']} | {r['float_convs']} "
            f"| {r['top1_agreement'] * 100:.1f} % | {r['det_top1_agreement'] * 100:.1f} % "
            f"| {r['map_correlation']:.4f} | {r['probs_max_abs']:.3f} | {'pass' if r['passed'] else 'FAIL'} "
            f"| {r['size_mb']:.2f} | {r['median_ms']:.2f} |"
        )
    return "\n".join(lines)
