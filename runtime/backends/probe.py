"""``--device auto`` on a machine without a GPU: run the fastest CPU back-end that computes what the file does.

The candidates are what the file allows here: ONNX Runtime (the file's own precision), OpenVINO
with FP32 float layers and, on CPUs with BF16, OpenVINO BF16 (an INT8 file runs its quantized
layers in INT8 either way). Each is loaded, run once on a fixed probe batch and compared with ONNX
Runtime's outputs on the same batch (``PARITY_TARGETS`` of the precision it computes in, the
targets ``export/parity.py`` holds exported files to); those that pass are timed in interleaved
rounds on one frame's input rows, and the fastest is kept. The choice is cached per model file
(SHA-256) and machine (CPU model, cores, thread setting, back-end versions) in
``$WSCNET_CACHE_DIR/device-choice.json`` (default ``~/.cache/wscnet-edge``), so later loads
skip the probe; it is logged in one line and kept on the back-end as ``backend.choice``.
"""

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RuntimeUserError
from .base import Backend

log = logging.getLogger("runtime")

CACHE_ENV = "WSCNET_CACHE_DIR"
CACHE_FILE = "device-choice.json"
PROBE_FRAMES = 8
TIE_MARGIN = 0.05  # a probe frame counts for top-1 agreement only where the reference's top two differ more
WARMUP_CALLS = 2
TIMED_ROUNDS = 7
TIE_SHARE = 0.05  # another back-end must beat ONNX Runtime (the reference) by more than this to be picked

# What an exported file must match, per precision it computes in (``export/parity.py`` checks files
# against PyTorch with these; the probe checks a back-end against ONNX Runtime with them).
PARITY_TARGETS = {
    "fp32": {"top1_agreement": 1.0, "probs_max_abs": 1e-4},
    "fp16": {"top1_agreement": 0.99, "map_correlation": 0.99},
    # OpenVINO's BF16 (from the fp32 file): 8 significant bits against FP16's 11, but oneDNN sums the
    # products in f32 and keeps Softmax and the outputs f32, so only layer inputs and weights are
    # rounded. Measured on 120 held-out images (resnet18, 64 and 224 px): top-1 1.0, map
    # correlation 1.0000, probs max abs 0.004. The 16-bit targets of FP16 hold it; a top-1 flip
    # needs a near tie.
    "bf16": {"top1_agreement": 0.99, "map_correlation": 0.99},
    "int8": {"top1_agreement": 0.97, "map_correlation": 0.95},
}


def thresholds_for(precision: str) -> dict:
    """Targets of ``precision``; a mixed one (OpenVINO's ``int8+bf16``: Q/DQ layers in INT8, the rest
    in BF16) is held to its quantized part's, the looser, since INT8 error dominates."""
    if precision in PARITY_TARGETS:
        return PARITY_TARGETS[precision]
    if "+" in precision and precision.split("+")[0] in PARITY_TARGETS:
        return PARITY_TARGETS[precision.split("+")[0]]
    return {}


@dataclass(frozen=True)
class Candidate:
    device: str  # an ``open_backend`` device: "cpu" (ONNX Runtime) or "openvino"
    precision: str | None = None  # OpenVINO's float precision; None: the back-end's default

    @property
    def name(self) -> str:
        return "onnxruntime" if self.device == "cpu" else f"openvino-{self.precision or 'fp32'}"


REFERENCE = Candidate("cpu")


def open_fastest(path: Path, threads: int, backend_for) -> Backend:
    """The loaded back-end ``--device auto`` runs ``path`` with on this CPU (see the module doc);
    ``backend_for(path, device, threads, precision)`` makes a back-end, not yet loaded."""

    def load(candidate: Candidate) -> Backend:
        backend = backend_for(path, candidate.device, threads, candidate.precision)
        backend.load(path)
        return backend

    options = candidates()
    if len(options) == 1:
        backend = load(REFERENCE)
        backend.choice = {"device": REFERENCE.name, "reason": "the only CPU back-end installed", "cached": False}
        return backend
    key = cache_key(path, threads)
    cached = read_cache().get(key)
    if cached is not None:
        backend = load_cached(load, cached)
        if backend is not None:
            return backend
    backend, choice = probe(load, options)
    write_cache(key, {**choice, "model": str(path)})
    backend.choice = {**choice, "cached": False}
    log.info(f"device auto: {choice['device']} ({choice['reason']}; measured now)")
    return backend


def candidates() -> list[Candidate]:
    """ONNX Runtime first (the reference), then the OpenVINO precisions this CPU offers."""
    try:
        from .openvino_backend import import_openvino, openvino_devices

        import_openvino()
    except RuntimeUserError:
        return [REFERENCE]
    found = [REFERENCE, Candidate("openvino", "fp32")]
    cpu = next((d for d in openvino_devices() if d["name"] == "CPU"), None)
    if cpu is not None and "BF16" in cpu["capabilities"]:
        found.append(Candidate("openvino", "bf16"))
    return found


def load_cached(load, cached: dict) -> Backend | None:
    """The cached choice, loaded; None when it no longer loads (probe again)."""
    candidate = Candidate(cached["candidate"]["device"], cached["candidate"]["precision"])
    try:
        backend = load(candidate)
    except RuntimeUserError as exc:
        log.info(f"device auto: the cached choice {candidate.name} no longer loads ({exc}); probing again")
        return None
    backend.choice = {**cached, "cached": True}
    log.info(f"device auto: {cached['device']} ({cached['reason']}; cached)")
    return backend


def probe(load, options: list[Candidate]) -> tuple[Backend, dict]:
    """Load every candidate, keep those matching ONNX Runtime, time them; (fastest, what was seen)."""
    reference = load(REFERENCE)
    batch, rows_per_frame = probe_batch(reference)
    expected = reference.infer(batch)
    passed: dict[Candidate, Backend] = {REFERENCE: reference}
    rejected: dict[str, str] = {}
    for candidate in options[1:]:
        try:
            backend = load(candidate)
        except RuntimeUserError as exc:
            rejected[candidate.name] = str(exc)
            continue
        mismatch = parity_mismatch(expected, backend.infer(batch), backend.executed_precision)
        if mismatch:
            rejected[candidate.name] = mismatch
            backend.close()
        else:
            passed[candidate] = backend
    times = time_interleaved(passed, batch[:rows_per_frame])
    best = fastest(times)
    for candidate, backend in passed.items():
        if candidate != best:
            backend.close()
    return passed[best], describe_choice(best, passed[best], times, rejected, rows_per_frame)


def fastest(times: dict[Candidate, float]) -> Candidate:
    """The fastest candidate; ONNX Runtime unless another beats it by more than ``TIE_SHARE``
    (a near tie is noise on a loaded machine, and the reference needs nothing else)."""
    best = min(times, key=times.get)
    if REFERENCE in times and times[best] >= times[REFERENCE] * (1 - TIE_SHARE):
        return REFERENCE
    return best


def describe_choice(best: Candidate, backend: Backend, times: dict, rejected: dict, rows: int) -> dict:
    others = [f"{c.name} {ms:.2f} ms" for c, ms in sorted(times.items(), key=lambda item: item[1]) if c != best]
    tie = best == REFERENCE and min(times.values()) < times[best]
    reason = (
        f"{'within ' + str(round(TIE_SHARE * 100)) + ' % of the fastest' if tie else 'fastest'}: "
        f"{times[best]:.2f} ms per frame ({rows} input row{'s' * (rows > 1)})"
    )
    reason += f" vs {', '.join(others)}" if others else ", the only one matching ONNX Runtime"
    if rejected:
        reason += "; left out: " + ", ".join(rejected)
    return {
        "device": best.name,
        "candidate": {"device": best.device, "precision": best.precision},
        "executed_precision": backend.executed_precision,
        "description": backend.description,
        "times_ms": {c.name: round(ms, 3) for c, ms in times.items()},
        "rejected": rejected,
        "reason": reason,
    }


def probe_batch(backend: Backend) -> tuple[np.ndarray, int]:
    """A fixed batch of synthetic camera-like frames as the model's input (every view), and the
    number of input rows one frame takes."""
    from ..framing import Framing

    framing = Framing(backend.metadata)
    batch = framing.new_batch(PROBE_FRAMES)
    rng = np.random.default_rng(0)
    for row in range(PROBE_FRAMES):
        framing.to_tensor(probe_frame(rng), batch, row)
    return batch, framing.per_frame


def probe_frame(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A BGR frame with structure at several scales: a colour gradient, a few ellipses, noise."""
    import cv2

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    start, end = rng.uniform(0, 255, (2, 3))
    frame = start + (end - start) * ((xx / w + yy / h) / 2)[..., None]
    for _ in range(4):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(10, w // 3)), int(rng.integers(10, h // 3)))
        cv2.ellipse(frame, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
    return np.clip(frame + rng.normal(0, 12, frame.shape), 0, 255).astype(np.uint8)


def parity_mismatch(expected: dict, got: dict, precision: str) -> str | None:
    """None when ``got`` meets the targets of ``precision`` against ``expected``, else what it missed."""
    targets = thresholds_for(precision)
    ref, out = expected["probs"], got["probs"]
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > TIE_MARGIN
    if "top1_agreement" in targets and decided.any():
        agreement = float((ref.argmax(1) == out.argmax(1))[decided].mean())
        if agreement < targets["top1_agreement"]:
            return f"{precision}: top-1 agreement {agreement:.3f} < {targets['top1_agreement']}"
    if "probs_max_abs" in targets:
        worst = float(np.abs(ref - out).max())
        if worst > targets["probs_max_abs"]:
            return f"{precision}: probs max abs {worst:.2g} > {targets['probs_max_abs']}"
    if "map_correlation" in targets:
        a, b = expected["sentiment_map"].ravel(), got["sentiment_map"].ravel()
        correlation = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float(np.allclose(a, b))
        if not correlation >= targets["map_correlation"]:
            return f"{precision}: map correlation {correlation:.4f} < {targets['map_correlation']}"
    return None


def time_interleaved(backends: dict[Candidate, Backend], batch: np.ndarray) -> dict[Candidate, float]:
    """Median milliseconds per call of each back-end on ``batch``, timed in turns so load from
    other processes hits them alike."""
    for backend in backends.values():
        for _ in range(WARMUP_CALLS):
            backend.infer(batch)
    times: dict[Candidate, list[float]] = {c: [] for c in backends}
    for _ in range(TIMED_ROUNDS):
        for candidate, backend in backends.items():
            start = time.perf_counter()
            backend.infer(batch)
            times[candidate].append((time.perf_counter() - start) * 1e3)
    return {c: float(np.median(t)) for c, t in times.items()}


# ---- the cache ------------------------------------------------------------------------------------
def cache_path() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wscnet-edge"
    return Path(root) / CACHE_FILE


def cache_key(path: Path, threads: int) -> str:
    """The model file's content and the machine the timings belong to."""
    return json.dumps({"model_sha256": file_sha256(path), **machine(threads)}, sort_keys=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_choices(path: Path) -> list[tuple[int, dict]]:
    """Every (threads, choice) cached for ``path``'s content on this machine, for ``doctor``."""
    sha, here = file_sha256(path), machine(0)
    found = []
    for key, choice in read_cache().items():
        try:
            described = json.loads(key)
        except ValueError:
            continue
        same_machine = all(described.get(k) == v for k, v in here.items() if k != "threads")
        if described.get("model_sha256") == sha and same_machine and isinstance(choice, dict):
            found.append((int(described.get("threads", 0)), choice))
    return sorted(found, key=lambda item: item[0])


def machine(threads: int) -> dict:
    import onnxruntime

    try:
        import openvino

        openvino_version = openvino.__version__
    except ImportError:
        openvino_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_cache() -> dict:
    """The cached choices (an unreadable cache is ignored: the probe runs again and rewrites it)."""
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning(f"{path}: unreadable device-choice cache ({exc}); probing again")
        return {}
    return cache if isinstance(cache, dict) else {}


def write_cache(key: str, entry: dict) -> None:
    """Add one choice to the cache, atomically (a reader sees the old file or the new one)."""
    path, tmp = cache_path(), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = {**read_cache(), key: entry}
        fd, tmp = tempfile.mkstemp(prefix=".device-choice.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home: the choice is still made, only not remembered
        log.warning(f"{path}: cannot write the device-choice cache ({exc})")
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
