"""Compare an exported model with the PyTorch reference on real images.

Per output: max abs error, max rel error (|d| / max(|ref|, 1e-3)), mean abs error; the top-1
agreement of ``probs`` (and of ``det_scores``) and the Pearson correlation of the sentiment maps
(all maps flattened together, plus the mean over images whose maps are not constant).
"""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from runtime.backends.probe import PARITY_TARGETS, thresholds_for
from wscnet.atomic import atomic_write_text
from wscnet.checkpoint import load_checkpoint
from wscnet.errors import UserError

from .images import ImageSet, folder_images, load_batch
from .onnx_export import OUTPUT_NAMES, DeployModel
from .provenance import check_model_matches

# Targets on held-out images, per precision: a model that misses one fails parity (exit code 3);
# the runtime's --device auto probe holds back-ends to them too (runtime.backends.probe).
THRESHOLDS = PARITY_TARGETS
REL_FLOOR = 1e-3


class _Runner:
    """The exported file through the runtime's back-end for it: what a deployment runs."""

    def __init__(self, path: str | Path, device: str | None = None, precision: str | None = None) -> None:
        from runtime.backends import open_backend

        # ONNX on the CPU provider by default, so parity measures the file, not a GPU provider's arithmetic
        device = device or ("cpu" if str(path).lower().endswith(".onnx") else "auto")
        try:
            self.backend = open_backend(path, device=device, precision=precision)
        except Exception as exc:
            if getattr(exc, "user_facing", False):
                raise UserError(str(exc)) from None
            raise
        self.fixed_batch = self.backend.fixed_batch
        meta = self.backend.metadata
        # the precision the back-end computes in (OpenVINO BF16 from an fp32 file is bf16)
        self.metadata = {**meta.extra, "precision": self.backend.executed_precision, "input_size": str(meta.input_size)}
        self.contract = meta.contract

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.infer(batch)


def open_runner(model_path: str | Path, device: str | None = None, precision: str | None = None) -> _Runner:
    """The model file, or a ``triton://HOST:PORT/MODEL`` on a server, through the runtime's back-end."""
    from runtime.backends.triton_backend import is_triton_url

    if not is_triton_url(model_path):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise UserError(f"{model_path}: model file not found")
    return _Runner(model_path, device, precision)


def run_parity(
    model_path: str | Path,
    checkpoint_path: str | Path,
    images: ImageSet | str | Path,
    *,
    n: int = 200,
    batch: int = 8,
    progress: bool = True,
    device: str | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Run the exported model and the PyTorch reference on the same inputs: ``images`` (an
    ImageSet, or a folder of which ``n`` images are used) made by the model's own input contract;
    the model on ``device`` / ``precision`` (see ``runtime.backends.open_backend``)."""
    if n < 1:
        raise UserError(f"--n must be at least 1; got {n}")
    if batch < 1:
        raise UserError(f"--batch must be at least 1; got {batch}")
    runner = open_runner(model_path, device, precision)
    model, ckpt = load_checkpoint(checkpoint_path)
    check_model_matches(model_path, runner.backend.metadata, Path(checkpoint_path), ckpt)
    reference = DeployModel(model).eval()
    if not isinstance(images, ImageSet):
        images = folder_images(Path(images), n)
    step = runner.fixed_batch or batch
    check_parity_memory(ckpt["model_config"], runner.contract.input_size, step, fixed=bool(runner.fixed_batch))
    # PyTorch takes the checkpoint's normalisation: the file's differs when it is folded into the graph
    torch_contract = replace(runner.contract, mean=tuple(ckpt["mean"]), std=tuple(ckpt["std"]))
    ref_all, got_all = _outputs_of_both(runner, reference, torch_contract, list(images.files), step, progress)
    report = summarise(ref_all, got_all, model=str(model_path), precision=runner.metadata.get("precision", "fp32"))
    report["images"] = images.description
    report["backend"] = runner.backend.description
    return report


def _outputs_of_both(
    runner: _Runner, reference, torch_contract, files: list[Path], step: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(PyTorch's, the file's) outputs on every image, ``step`` images at a time."""
    got: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_NAMES}
    ref: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_NAMES}
    bar = tqdm(total=len(files), desc="parity", unit="img", disable=not progress, leave=False)
    for start in range(0, len(files), step):
        paths = files[start : start + step]
        chunk = load_batch(paths, runner.contract)
        torch_in = chunk if torch_contract == runner.contract else load_batch(paths, torch_contract)
        outputs = runner.infer(np.ascontiguousarray(chunk))  # a fixed-batch model: the back-end pads
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(torch.from_numpy(np.ascontiguousarray(torch_in)))]
        for name, value in zip(OUTPUT_NAMES, expected):
            ref[name].append(value)
            got[name].append(np.asarray(outputs[name], dtype=np.float32))
        bar.update(len(chunk))
    bar.close()
    return ({k: np.concatenate(v) for k, v in ref.items()}, {k: np.concatenate(v) for k, v in got.items()})


def check_parity_memory(model_config: dict, size: int, batch: int, *, fixed: bool) -> None:
    """One line before any image is compared when a batch through both models will not fit.

    Only one batch is in memory at a time (outputs kept are a few numbers per image), so the
    number of images does not matter; the batch does: PyTorch's and the exported model's
    forward passes each keep their peak (their allocators hold on to it).
    """
    from wscnet.memory import forward_bytes_per_image, largest_fitting, require

    per_image = 2 * forward_bytes_per_image(model_config, size) + 2 * 3 * size * size * 4
    if largest_fitting(lambda b: b * per_image, [batch]) == batch:
        return
    best = None if fixed else largest_fitting(lambda b: b * per_image, [b for b in (4, 2, 1) if b < batch])
    fix = f"--batch {best} would fit" if best else "export the model with a smaller batch or --img-size"
    require(f"parity at {size} px, batch {batch}", batch * per_image, fix)


def summarise(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, model: str, precision: str) -> dict[str, Any]:
    report: dict[str, Any] = {"model": model, "precision": precision, "n_images": int(len(ref["probs"]))}
    report["outputs"] = {name: error_stats(ref[name], got[name]) for name in OUTPUT_NAMES}
    report["top1_agreement"] = agreement(ref["probs"], got["probs"])
    report["det_top1_agreement"] = agreement(ref["det_scores"], got["det_scores"])
    report["map_correlation"] = correlation(ref["sentiment_map"], got["sentiment_map"])
    report["map_correlation_per_image"] = per_image_correlation(ref["sentiment_map"], got["sentiment_map"])
    report["thresholds"] = thresholds_for(precision)
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


def save_parity(report: dict[str, Any], model_path: Path, key: str | None = None) -> Path:
    """Merge ``report`` into ``parity.json`` beside the model, keyed by ``key`` (default: the model's
    file name)."""
    path = Path(model_path).with_name("parity.json")
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = {}
    existing[key or Path(model_path).name] = report
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
