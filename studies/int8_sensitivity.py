"""Why an INT8 model disagrees with its FP32 original: near ties, and which blocks are sensitive.

    python cli.py study int8-sensitivity runs/m/mobilenet_v3_small/best.pt --calib runs/m/data \\
        --heldout runs/m/heldout --out runs/int8-sensitivity

On the held-out images (FP32 ONNX = the reference, as parity's PyTorch reference, top-1 equal):

- margins: the FP32 probability gap between the top two classes of every image, for the
  images INT8 flips and for all; top-1 agreement among images whose gap is at least τ;
- ``--compare``: the same margins for other exported files of the checkpoint (e.g. its FP16);
- blocks: the backbone's blocks (``backbone.N``, ``detector``) quantized one at a time (the rest
  float) and left float one at a time (the rest INT8): top-1 agreement and mean |Δprobs|;
- ``--target 0.97``: a greedy mixed-precision search on top of the architecture's float layout:
  whole blocks left float, the most helpful first, until top-1 agreement reaches the target.

Ranges are calibrated once (``--method``) and shared by every variant.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx

from export.int8 import block_of
from wscnet.atomic import atomic_write_text

MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2)


def probabilities(model: Path, batch: np.ndarray) -> np.ndarray:
    from runtime.backends import open_backend

    backend = open_backend(model, device="cpu", threads=1)
    probs = np.concatenate([backend.infer(batch[i : i + 8])["probs"] for i in range(0, len(batch), 8)])
    backend.close()
    return probs


def margin_report(reference: np.ndarray, probs: np.ndarray) -> dict:
    """Top-1 agreement overall and above each FP32 margin; the margins of the flipped images."""
    top2 = np.sort(reference, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    agree = reference.argmax(1) == probs.argmax(1)
    above = {
        f"{t:.2f}": {"images": int((margin >= t).sum()), "agreement": float(agree[margin >= t].mean())}
        for t in MARGINS
        if (margin >= t).any()
    }
    return {
        "agreement": float(agree.mean()),
        "mean_abs_dprobs": float(np.abs(probs - reference).mean()),
        "fp32_top1_prob_median": float(np.median(top2[:, 1])),
        "margin_median_all": float(np.median(margin)),
        "margins_of_flips": sorted(round(float(m), 4) for m in margin[~agree]),
        "agreement_above_margin": above,
    }


class Quantizer:
    """One FP32 model, its calibration ranges computed once, INT8 variants by excluded nodes."""

    def __init__(self, fp32: Path, calib: Path, calib_n: int, method: str, workdir: Path) -> None:
        from export.calibration import CalibrationImages, collect_ranges
        from export.images import folder_images
        from export.int8 import QUANTIZED_OPS, prepare_for_calibration
        from export.onnx_metadata import load_onnx, model_contract

        self.source = load_onnx(fp32)
        self.method, self.workdir = method, workdir
        self.prepared = prepare_for_calibration(fp32, workdir)
        images = CalibrationImages(
            list(folder_images(calib, calib_n).files),
            self.source.graph.input[0].name,
            model_contract(self.source, str(fp32)),
        )
        self.ranges = collect_ranges(self.prepared, images, method, QUANTIZED_OPS, workdir)
        self.nodes = [n.name for n in self.source.graph.node if n.op_type in QUANTIZED_OPS]

    def variant(self, name: str, keep_float: list[str]) -> Path:
        from export.int8 import finish_int8, place_qdq

        out = self.workdir / f"{name}.onnx"
        place_qdq(self.prepared, self.workdir / "qdq.onnx", self.method, ranges=self.ranges, exclude=keep_float)
        finish_int8(onnx.load(str(self.workdir / "qdq.onnx")), self.source, out)
        return out


def block_rows(
    quantizer: Quantizer,
    reference: np.ndarray,
    batch: np.ndarray,
    modes: tuple[str, ...] = ("only this INT8", "only this float"),
    base: tuple[str, ...] = (),
) -> list[dict]:
    """Per block: quantized alone (the rest float) and/or left float alone (the rest INT8, except
    the nodes in ``base``, which stay float in every variant)."""
    rows = []
    for block in blocks_of(quantizer):
        inside = [n for n in quantizer.nodes if block_of(n) == block]
        kept_by_mode = {
            "only this INT8": [n for n in quantizer.nodes if n not in inside],
            "only this float": sorted(set(inside) | set(base)),
        }
        for mode in modes:
            rows.append(
                {
                    "block": block,
                    "nodes": len(inside),
                    "mode": mode,
                    **agreement(quantizer.variant("block", kept_by_mode[mode]), reference, batch),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def blocks_of(quantizer: Quantizer) -> list[str]:
    return list(dict.fromkeys(block_of(n) for n in quantizer.nodes))


def agreement(model: Path, reference: np.ndarray, batch: np.ndarray) -> dict:
    probs = probabilities(model, batch)
    return {
        "agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
        "mean_abs_dprobs": float(np.abs(probs - reference).mean()),
    }


def float_search(
    quantizer: Quantizer, reference: np.ndarray, batch: np.ndarray, base_layout: str, target: float
) -> dict:
    """Greedy mixed precision on top of ``base_layout`` (see ``greedy_float_blocks``)."""
    from export.int8 import float_nodes

    base = tuple(float_nodes(quantizer.source, base_layout))
    singles = block_rows(quantizer, reference, batch, modes=("only this float",), base=base)

    def measure(blocks: list[str]) -> dict:
        kept = sorted(set(base) | {n for n in quantizer.nodes if block_of(n) in blocks})
        return {"float_nodes": len(kept), **agreement(quantizer.variant("search", kept), reference, batch)}

    steps = greedy_float_blocks(singles, measure, target)
    parts = ([] if base_layout == "none" else [base_layout]) + (steps[-1]["float_blocks"] if steps else [])
    return {
        "base_layout": base_layout,
        "target": target,
        "singles": singles,
        "steps": steps,
        "reached": bool(steps) and steps[-1]["agreement"] >= target,
        "layout": "+".join(parts) or "none",
    }


def greedy_float_blocks(singles: list[dict], measure, target: float) -> list[dict]:
    """Leave whole blocks float, the one that helps most alone first (``singles``: one row per
    block left float alone), until ``measure(blocks)`` reaches ``target`` top-1 agreement."""
    order = [r["block"] for r in sorted(singles, key=lambda r: (-r["agreement"], r["mean_abs_dprobs"]))]
    steps: list[dict] = []
    for count in range(1, len(order) + 1):
        steps.append({"float_blocks": order[:count], **measure(order[:count])})
        print(json.dumps(steps[-1]), flush=True)
        if steps[-1]["agreement"] >= target:
            break
    return steps


def run_int8_sensitivity(
    checkpoint: Path,
    *,
    calib: Path,
    heldout: Path,
    out: Path,
    method: str,
    calib_n: int,
    n: int,
    blocks: bool,
    layout: list[str],
    target: float | None,
    compare: list[Path],
) -> None:
    from export.images import find_images, load_batch
    from export.int8 import float_layout, float_nodes
    from export.onnx_export import export_onnx
    from export.onnx_metadata import model_contract, read_metadata

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wscnet-sensitivity-") as tmp:
        fp32 = export_onnx(checkpoint, Path(tmp) / "model.onnx")
        quantizer = Quantizer(fp32, calib, calib_n, method, Path(tmp))
        batch = load_batch(find_images(heldout, n), model_contract(quantizer.source, str(fp32)))
        reference = probabilities(fp32, batch)
        arch = read_metadata(quantizer.source).get("arch", "")
        result = {
            "checkpoint": str(checkpoint),
            "method": method,
            "calib_n": calib_n,
            "images": len(batch),
            "layouts": {},
        }
        for name in dict.fromkeys(("none", float_layout(arch), *layout)):
            probs = probabilities(quantizer.variant(name, float_nodes(quantizer.source, name)), batch)
            result["layouts"][name] = margin_report(reference, probs)
            print(name, json.dumps(result["layouts"][name]), flush=True)
        for path in compare:
            result.setdefault("files", {})[str(path)] = margin_report(reference, probabilities(path, batch))
            print(path, json.dumps(result["files"][str(path)]), flush=True)
        atomic_write_text(out / "sensitivity.json", json.dumps(result, indent=2) + "\n")
        if blocks:
            result["blocks"] = block_rows(quantizer, reference, batch)
            atomic_write_text(out / "sensitivity.json", json.dumps(result, indent=2) + "\n")
        if target is not None:
            result["search"] = float_search(quantizer, reference, batch, float_layout(arch), target)
            atomic_write_text(out / "sensitivity.json", json.dumps(result, indent=2) + "\n")
