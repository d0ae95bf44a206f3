"""Compare an exported model with the PyTorch reference on real images.

Per output: max abs error, max rel error (|d| / max(|ref|, 1e-3)), mean abs error; the top-1
agreement of ``probs`` (and of ``det_scores``) and the Pearson correlation of the sentiment maps
(all maps flattened together, plus the mean over images whose maps are not constant).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wscnet.atomic import atomic_write_text
from wscnet.checkpoint import load_checkpoint
from wscnet.errors import UserError

from .images import ImageSet, folder_images, load_batch
from .onnx_export import OUTPUT_NAMES, DeployModel

# Held-out targets of the issue, per precision.
THRESHOLDS = {
    "fp32": {"top1_agreement": 1.0, "probs_max_abs": 1e-4},
    "fp16": {"top1_agreement": 0.99, "map_correlation": 0.99},
    "int8": {"top1_agreement": 0.97, "map_correlation": 0.95},
}
REL_FLOOR = 1e-3


class _Runner:
    """The exported file through the runtime's back-end for it: what a deployment runs."""

    def __init__(self, path: Path) -> None:
        from runtime.backends import open_backend

        # ONNX on the CPU provider, so parity measures the file, not a GPU provider's arithmetic
        device = "cpu" if path.suffix.lower() == ".onnx" else "auto"
        try:
            self.backend = open_backend(path, device=device)
        except Exception as exc:
            if getattr(exc, "user_facing", False):
                raise UserError(str(exc)) from None
            raise
        self.fixed_batch = self.backend.fixed_batch
        meta = self.backend.metadata
        self.metadata = {**meta.extra, "precision": meta.precision, "input_size": str(meta.input_size)}
        self.contract = meta.contract

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.infer(batch)


def open_runner(model_path: Path) -> _Runner:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"{model_path}: model file not found")
    return _Runner(model_path)


def run_parity(
    model_path: str | Path,
    checkpoint_path: str | Path,
    images: ImageSet | str | Path,
    *,
    n: int = 200,
    batch: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the exported model and the PyTorch reference on the same inputs: ``images`` (an
    ImageSet, or a folder of which ``n`` images are used) made by the model's own input contract."""
    if n < 1:
        raise UserError(f"--n must be at least 1; got {n}")
    runner = open_runner(Path(model_path))
    model, ckpt = load_checkpoint(checkpoint_path)
    reference = DeployModel(model).eval()
    if not isinstance(images, ImageSet):
        images = folder_images(Path(images), n)
    files = list(images.files)
    step = runner.fixed_batch or batch
    got: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_NAMES}
    ref: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_NAMES}
    bar = tqdm(total=len(files), desc="parity", unit="img", disable=not progress, leave=False)
    for start in range(0, len(files), step):
        chunk = load_batch(files[start : start + step], runner.contract)
        real = len(chunk)
        if runner.fixed_batch and real < step:  # a fixed-batch model needs full batches
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - real, axis=0)])
        outputs = runner.infer(np.ascontiguousarray(chunk))
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(torch.from_numpy(chunk))]
        for name, value in zip(OUTPUT_NAMES, expected):
            ref[name].append(value[:real])
            got[name].append(np.asarray(outputs[name], dtype=np.float32)[:real])
        bar.update(real)
    bar.close()
    ref_all = {k: np.concatenate(v) for k, v in ref.items()}
    got_all = {k: np.concatenate(v) for k, v in got.items()}
    report = summarise(ref_all, got_all, model=str(model_path), precision=runner.metadata.get("precision", "fp32"))
    report["images"] = images.description
    return report


def summarise(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, model: str, precision: str) -> dict[str, Any]:
    report: dict[str, Any] = {"model": model, "precision": precision, "n_images": int(len(ref["probs"]))}
    report["outputs"] = {name: error_stats(ref[name], got[name]) for name in OUTPUT_NAMES}
    report["top1_agreement"] = agreement(ref["probs"], got["probs"])
    report["det_top1_agreement"] = agreement(ref["det_scores"], got["det_scores"])
    report["map_correlation"] = correlation(ref["sentiment_map"], got["sentiment_map"])
    report["map_correlation_per_image"] = per_image_correlation(ref["sentiment_map"], got["sentiment_map"])
    report["thresholds"] = THRESHOLDS.get(precision, {})
    report["passed"] = passes(report)
    return report


def error_stats(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    if ref.shape != got.shape:
        raise UserError(f"output shape {got.shape} differs from the reference {ref.shape}")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "max_rel": float((diff / np.maximum(np.abs(ref), REL_FLOOR)).max()),
    }


def agreement(ref: np.ndarray, got: np.ndarray) -> float:
    return float((ref.argmax(axis=1) == got.argmax(axis=1)).mean())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def per_image_correlation(ref: np.ndarray, got: np.ndarray) -> float | None:
    values = [
        correlation(r, g)
        for r, g in zip(ref.reshape(len(ref), -1), got.reshape(len(got), -1))
        if r.std() > 0 and g.std() > 0
    ]
    return float(np.mean(values)) if values else None


def passes(report: dict[str, Any]) -> bool:
    """True only when the precision has targets and all of them are met (unknown precision: False)."""
    limits = report["thresholds"]
    if not limits:
        return False
    ok = True
    if "top1_agreement" in limits:
        ok &= report["top1_agreement"] >= limits["top1_agreement"]
    if "probs_max_abs" in limits:
        ok &= report["outputs"]["probs"]["max_abs"] <= limits["probs_max_abs"]
    if "map_correlation" in limits:
        ok &= report["map_correlation"] >= limits["map_correlation"]
    return bool(ok)


def save_parity(report: dict[str, Any], model_path: Path) -> Path:
    """Merge ``report`` into ``parity.json`` beside the model, keyed by the model's file name."""
    path = Path(model_path).with_name("parity.json")
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = {}
    existing[Path(model_path).name] = report
    atomic_write_text(path, json.dumps(existing, indent=2) + "\n")
    return path


def format_report(report: dict[str, Any]) -> str:
    """A few lines: one per output with its errors, then agreement and map correlation."""
    lines = [f"parity of {Path(report['model']).name} ({report['precision']}, {report['n_images']} images):"]
    for name, stats in report["outputs"].items():
        lines.append(
            f"  {name:<14} max abs {stats['max_abs']:.3g}  max rel {stats['max_rel']:.3g}  "
            f"mean abs {stats['mean_abs']:.3g}"
        )
    lines.append(
        f"  top-1 agreement {report['top1_agreement'] * 100:.2f} % (detection branch "
        f"{report['det_top1_agreement'] * 100:.2f} %), map correlation {report['map_correlation']:.5f}"
    )
    verdict = "PASS" if report["passed"] else "FAIL"
    lines.append(f"  {verdict} against {json.dumps(report['thresholds'])}")
    return "\n".join(lines)
