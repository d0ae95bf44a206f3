"""``python cli.py bench``: every (model, back-end, batch) measured the same way, one row each.

For each case (model × image size) the PyTorch fp32 reference runs once in this process on the
check images; then each back-end × batch is measured in a process of its own
(``benchmarks.worker``), which also returns its outputs on the same images (once per model
file), so every row carries the parity code's verdict (``export.parity``: top-1 agreement, map
correlation, probability error against the reference) next to its speed.
"""

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wscnet.choices import input_side_problem
from wscnet.errors import UserError

from . import models
from .engines import SPECS, TORCH_MISSING, BackendSpec, skip_reason, torch_installed
from .measure import STAT_NAMES

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_VIDEO = Path("test")


@dataclass
class BenchSettings:
    backends: list[str]
    batches: list[int]
    img_sizes: list[int] | None = None
    warmup: int = 3
    iters: int | None = None
    duration: float | None = 3.0
    min_iters: int = 5
    agreement_images: int = 40
    calib_images: int = 8  # calibration memory does not grow with it (export.calibration); time does
    threads: int | list[int] = 0  # several: every row and video run once per thread count
    data: Path | None = None
    reference: Path | None = None
    video: Path | None = None  # "test": a synthetic 640×480 clip written into --out
    video_frames: int = 60
    video_backend: str = "ort-int8"
    peak_n: int = 2048

    def validate(self) -> None:
        unknown = [b for b in self.backends if b not in SPECS]
        if unknown:
            raise UserError(f"unknown back-end {', '.join(unknown)}; choose from {', '.join(SPECS)}")
        if not self.backends or not self.batches:
            raise UserError("--backends and --batch need at least one value each")
        if min(self.batches) < 1 or self.warmup < 0 or min(self.agreement_images, self.calib_images) < 1:
            raise UserError("--batch, --agreement-images and --calib-images must be >= 1, --warmup >= 0")
        if (self.iters is None) == (self.duration is None):
            raise UserError("give either --iters or --duration, not both")
        if (self.iters is not None and self.iters < 1) or (self.duration is not None and self.duration <= 0):
            raise UserError("--iters must be >= 1 and --duration > 0")
        for size in self.img_sizes or []:
            if problem := input_side_problem(size):
                raise UserError(f"--img-size {problem}")
        if min(self.thread_counts()) < 0:
            raise UserError("--threads must be >= 0")
        if self.video is not None and self.video != TEST_VIDEO and not self.video.is_file():
            raise UserError(f"{self.video}: video file not found")
        for name in self.video_backends():
            if name not in SPECS or SPECS[name].engine == "torch":
                raise UserError(f"--video-backend must be runtime back-ends (ort..., ov..., trt...); got {name!r}")

    def thread_counts(self) -> list[int]:
        return list(self.threads) if isinstance(self.threads, (list, tuple)) else [self.threads]

    def video_backends(self) -> list[str]:
        return [name.strip() for name in self.video_backend.split(",") if name.strip()]


def run_bench(inputs: list[str], out: Path, settings: BenchSettings, overwrite: bool = False) -> dict:
    """Measure everything, write bench.json / bench.md / bench.png into ``out``; return the results."""
    from .machine import describe_machine, measure_peak
    from .report import write_reports

    settings.validate()
    check_bench_out(out, overwrite)
    cases, image_dir, image_paths = prepare_inputs(inputs, out, settings)
    machine = describe_machine()
    peak = measure_peak(settings.peak_n)
    if machine["gpu"] is not None:
        peak.update({f"gpu_{k}": v for k, v in measure_peak(settings.peak_n * 4, device="cuda").items()})
    rows, video = measure_cases(cases, settings, image_paths, image_dir, out)
    # the CPU may be shared: a second peak measurement after the rows, keeping the best of each
    for key, value in measure_peak(settings.peak_n).items():
        peak[key] = max(peak.get(key, value), value)
    for row in rows:
        row["pct_of_peak"] = pct_of_peak(row, peak)
    machine["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    results = {
        "machine": machine,
        "peak": peak,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "rows": rows,
        "video": video,
        "validation_thresholds": parity_thresholds(),
    }
    results["files"] = {k: str(v) for k, v in write_reports(out, results).items()}
    return results


def prepare_inputs(inputs: list[str], out: Path, settings: BenchSettings) -> tuple[list, Path, list[Path]]:
    """(cases, image folder, check images): every input checked first, then default models, images
    and the test video made."""
    from export.images import find_images

    for token in inputs:
        models.classify(token)  # a typo fails before anything is built
    workdir = out / "models"
    # given model files are checked against their reference here, before images are written
    cases = models.resolve_cases(inputs, settings.img_sizes, workdir, settings.reference)
    workdir.mkdir(parents=True, exist_ok=True)
    image_dir = settings.data or synthetic_images(out / "images", settings.agreement_images)
    if settings.video == TEST_VIDEO:
        from .video_pipeline import write_test_video

        settings.video = write_test_video(out / "test-640x480.mp4", frames=settings.video_frames)
    return cases, image_dir, find_images(image_dir, settings.agreement_images)


def measure_cases(
    cases: list, settings: BenchSettings, image_paths: list[Path], image_dir: Path, out: Path
) -> tuple[list[dict], list[dict]]:
    """(table rows, video rows): every case × thread count × back-end × batch, with a progress bar."""
    workdir = out / "models"
    specs = [SPECS[name] for name in settings.backends]
    rows, video = [], []
    thread_counts = settings.thread_counts()
    progress = tqdm(
        total=len(cases) * len(specs) * len(settings.batches) * len(thread_counts),
        desc="bench",
        unit="row",
        file=sys.stderr,
    )
    for case in cases:
        context = case_context(case, image_paths, workdir)
        for threads in thread_counts:
            for spec in specs:
                for batch in settings.batches:
                    progress.set_postfix_str(f"{case.label}@{case.img_size} {spec.name} b{batch} t{threads}")
                    rows.append(measure_row(case, spec, batch, context, settings, image_dir, workdir, threads))
                    progress.update()
            if settings.video is not None:
                video += [
                    measure_video(case, SPECS[name], settings, image_dir, workdir, out, threads)
                    for name in settings.video_backends()
                ]
    progress.close()
    return rows, video


def check_bench_out(out: Path, overwrite: bool) -> None:
    """``out`` is a folder, and holds no earlier results unless the user asked to replace them."""
    from runtime.validate import check_output_folder

    from .report import REPORT_FILES

    check_output_folder(out, "--out")
    found = [name for name in REPORT_FILES.values() if (out / name).exists()]
    if found and not overwrite:
        raise UserError(
            f"{out}: already holds benchmark results ({', '.join(found)}); pass "
            "--overwrite to replace them or --out to write elsewhere"
        )


def failed_rows(results: dict) -> list[str]:
    """Rows that failed (validation or measurement), e.g. ``resnet18@224 ort-int8 b1: …``."""
    return [
        f"{r['model']}@{r['img_size']} {r['backend']} b{r['batch']}: {r['status']}"
        for r in results["rows"]
        if r["status"].startswith("failed")
    ]


def synthetic_images(folder: Path, n: int) -> Path:
    """The check images: the synthetic classes where torch is installed (agreement needs confident
    predictions), else plain noise images (without torch a row is timed, not compared)."""
    if folder.is_dir():
        return folder
    if not torch_installed():
        return noise_images(folder, n, size=128)
    from wscnet.tiny_model import write_image_folder

    write_image_folder(folder, models.DEFAULT_CLASSES, math.ceil(n / models.DEFAULT_CLASSES), size=128)
    return folder


def noise_images(folder: Path, n: int, size: int) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    (folder / "noise").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / "noise" / f"{i:03d}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def case_context(case: models.Case, image_paths: list[Path], workdir: Path) -> dict:
    """Check images (as the model input), the reference's probs and the model's FLOPs, once per case."""
    context = {"reference": None, "flops": None, "validation": {}, "model_config": case.config}
    if case.checkpoint is not None:
        images = reference_context(case, image_paths, context)
    else:  # a model file without --reference: its own input contract, no agreement
        from export.images import load_batch

        images = load_batch(image_paths, case.contract)
        if case.config is not None and torch_installed():  # FLOPs are counted on the PyTorch model
            from wscnet.model import WSCNet, WSCNetConfig

            from .flops import count_flops

            context["flops"] = count_flops(WSCNet(WSCNetConfig.from_dict(case.config)), case.img_size)
    context["images"] = workdir / f"check_{case.label}_{case.img_size}.npy"
    np.save(context["images"], images.astype(np.float32))
    return context


def reference_context(case: models.Case, image_paths: list[Path], context: dict) -> np.ndarray:
    """The PyTorch reference's outputs and FLOPs into ``context``; returns the check images."""
    from export.images import load_batch
    from export.onnx_metadata import export_contract

    from .flops import count_flops
    from .measure import predict_in_batches
    from .torch_runner import TorchRunner

    runner = TorchRunner("cpu")
    runner.load(case.checkpoint)
    ckpt = runner.checkpoint
    images = load_batch(image_paths, export_contract(ckpt, case.img_size))
    context["reference"] = predict_in_batches(runner, images, 8)  # probs, det_scores, maps
    if not all(np.isfinite(v).all() for v in context["reference"].values()):
        raise UserError(
            f"{case.checkpoint}: the PyTorch model gives NaN/inf on the check images "
            "(broken weights); nothing to compare the back-ends with"
        )
    context["flops"] = count_flops(runner.model, case.img_size)
    context["model_config"] = ckpt["model_config"]
    runner.close()
    return images


def measure_row(
    case,
    spec: BackendSpec,
    batch: int,
    context: dict,
    settings: BenchSettings,
    image_dir: Path,
    workdir: Path,
    threads: int = 0,
) -> dict:
    row = {
        "model": case.label,
        "backend": spec.name,
        "engine": spec.engine,
        "precision": spec.precision,
        "device": spec.device,
        "batch": batch,
        "img_size": case.img_size,
        "threads": threads,
        "status": "ok",
        "reason": None,
    }
    torch_missing = TORCH_MISSING if spec.engine == "torch" and not torch_installed() else None
    reason = torch_missing or models.not_applicable(case, spec) or skip_reason(spec)
    if reason:
        return empty_row(row, "skipped", reason)
    try:
        path = models.model_path(case, spec, batch, workdir, image_dir, settings.calib_images)
    except Exception as exc:  # an export that fails is a row that says so (Ultralytics style)
        return empty_row(row, "failed", f"export: {first_line(exc)}")
    too_big = worker_memory_shortfall(spec, path, batch, case.img_size, context["model_config"])
    if too_big:
        return empty_row(row, "skipped", too_big, path)
    key = (spec.name, str(path))  # torch and torch-cuda share a checkpoint, not a result
    known = context["validation"].get(key)
    result = run_worker(spec, path, batch, context["images"], settings, workdir, threads, predict=known is None)
    if "error" in result:
        return empty_row(row, "failed", result["error"], path)
    # the precision the back-end reports it computed in, never the one asked for
    row["precision"] = result.get("executed_precision") or spec.precision
    row.update(measured_fields(result, path, batch))
    row.update(throughput(context["flops"], batch, row["median_ms"]))
    if known is None:
        with np.load(result["outputs"]) as outputs:
            known = validate(context["reference"], dict(outputs), path, row["precision"])
        context["validation"][key] = known
    row.update(known)
    if row["validation_passed"] is False:
        row["status"] = "failed validation"
        row["reason"] = known["validation_failures"]
    elif row["precision"] != spec.precision:
        row["status"] = "other precision"
        row["reason"] = f"asked for {spec.precision}, the back-end ran {row['precision']}"
    return row


def measured_fields(result: dict, path: Path, batch: int) -> dict:
    """A worker's timings and memory as row fields (``median_ms``, ``gpu_median_ms``, ...)."""
    host, device = result["host_ms"], result["device_ms"] or {}
    return {
        "description": result["description"],
        "model_file": str(path),
        "iters": result["iters"],
        **{f"{k}_ms": host[k] for k in STAT_NAMES},
        "images_per_s": batch * 1000.0 / host["mean"],
        "ms_per_image": host["median"] / batch,
        "peak_mem_mb": result["peak_mem_mb"],
        "peak_gpu_mem_mb": result["peak_gpu_mem_mb"],
        "size_mb": model_bytes(path) / 1e6 if model_bytes(path) else None,
        **{f"gpu_{k}_ms": device.get(k) for k in STAT_NAMES if k != "max"},
    }


# A worker process before its model and batch: the interpreter and the libraries it imports.
WORKER_BASE_MB = {"torch": 700, "onnx": 150, "tensorrt": 700}


def worker_memory_shortfall(spec: BackendSpec, path: Path, batch: int, size: int, config: dict | None) -> str | None:
    """Why a row's worker would not fit in memory (checked before it starts), or None."""
    from wscnet.memory import GB, MB, current_rss_bytes, forward_bytes_per_image, memory_limit_bytes

    if config is None:
        return None
    need = WORKER_BASE_MB.get(spec.engine, 700) * MB + 2 * (model_bytes(path) or 0)
    if torch_installed():  # activation sizes come from the PyTorch model's shapes
        need += batch * forward_bytes_per_image(config, size)
    room = memory_limit_bytes() - current_rss_bytes()
    if need <= room:
        return None
    return f"needs about {need / GB:.1f} GB of memory, {room / GB:.1f} GB free: a smaller --batch would fit"


def model_bytes(path) -> int | None:
    """The model file's size; None for a triton:// model (its file is on the server)."""
    from runtime.backends.triton_backend import is_triton_url

    return None if is_triton_url(path) else Path(path).stat().st_size


def parity_thresholds() -> dict:
    """The parity targets rows are checked against (none without torch: no row is compared)."""
    if not torch_installed():
        return {}
    from export.parity import THRESHOLDS

    return THRESHOLDS


def validate(reference: dict | None, got: dict, path: Path, precision: str) -> dict:
    """The parity code's comparison with the PyTorch reference, and its verdict for ``precision``."""
    if reference is None:
        return {
            "top1_agreement": None,
            "map_correlation": None,
            "probs_max_abs": None,
            "validation_passed": None,
            "validation_failures": None,
            "agreement_images": len(got["probs"]),
        }
    from export.parity import summarise

    report = summarise(reference, got, model=str(path), precision=precision)
    measured = {
        "top1_agreement": report["top1_agreement"],
        "map_correlation": report["map_correlation"],
        "probs_max_abs": report["outputs"]["probs"]["max_abs"],
    }
    failures = []
    for key, limit in report["thresholds"].items():
        if key.endswith("_max_abs") and measured[key] > limit:
            failures.append(f"{key} {measured[key]:.2g} > {limit}")
        elif not key.endswith("_max_abs") and measured[key] < limit:
            failures.append(f"{key.replace('_', ' ')} {measured[key]:.3f} < {limit}")
    return {
        **measured,
        "validation_passed": report["passed"],
        "validation_failures": "; ".join(failures) or None,
        "agreement_images": report["n_images"],
    }


ROW_NUMBERS = (
    "iters",
    "min_ms",
    "mean_ms",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "images_per_s",
    "ms_per_image",
    "peak_mem_mb",
    "peak_gpu_mem_mb",
    "size_mb",
    "gflops",
    "gflops_per_s",
    "pct_of_peak",
    "top1_agreement",
    "map_correlation",
    "probs_max_abs",
    "validation_passed",
    "validation_failures",
    "agreement_images",
    "gpu_min_ms",
    "gpu_mean_ms",
    "gpu_median_ms",
    "gpu_p90_ms",
    "gpu_p99_ms",
)


def empty_row(row: dict, status: str, reason: str, path: Path | None = None) -> dict:
    row.update({"status": status, "reason": reason, "model_file": str(path) if path else None})
    row.update({key: None for key in ROW_NUMBERS})
    return row


def throughput(flops: int | None, batch: int, median_ms: float) -> dict:
    if not flops:
        return {"gflops": None, "gflops_per_s": None, "pct_of_peak": None}
    achieved = flops * batch / (median_ms / 1e3) / 1e9
    return {"gflops": flops / 1e9, "gflops_per_s": achieved, "pct_of_peak": None}


def pct_of_peak(row: dict, peak: dict) -> float | None:
    """Achieved GFLOP/s as a share of the measured peak of the row's precision and device."""
    if row.get("gflops_per_s") is None:
        return None
    prefix = "gpu_" if row["device"] == "cuda" else ""
    key = {"int8": "int8_gops", "fp16": "fp16_gflops"}.get(row["precision"], "fp32_gflops")
    ceiling = peak.get(prefix + key) or peak.get(prefix + "fp32_gflops")
    return 100.0 * row["gflops_per_s"] / ceiling if ceiling else None


def run_worker(
    spec: BackendSpec,
    path: Path,
    batch: int,
    images: Path,
    settings: BenchSettings,
    workdir: Path,
    threads: int = 0,
    *,
    predict: bool,
) -> dict:
    """Measure one row in a fresh ``python -m benchmarks.worker`` process and return its result."""
    job = {
        "engine": spec.engine,
        **spec.open_args(),
        "path": str(path),
        "batch": batch,
        "images": str(images),
        "warmup": settings.warmup,
        "iters": settings.iters,
        "duration": settings.duration,
        "min_iters": settings.min_iters,
        "threads": threads,
        "outputs": str(workdir / "outputs.npz") if predict else None,
    }
    job_path = workdir / "job.json"
    result_path = workdir / "result.json"
    job_path.write_text(json.dumps(job))
    result_path.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", str(job_path), str(result_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not result_path.is_file():
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"error": f"worker died: {tail[0][:200]}"}
    result = json.loads(result_path.read_text())
    result["outputs"] = job["outputs"]
    return result


def measure_video(
    case, spec: BackendSpec, settings: BenchSettings, image_dir: Path, workdir: Path, out: Path, threads: int = 0
) -> dict:
    """Whole runtime pipeline fps on the video with the case's model file for ``spec``."""
    from .video_pipeline import measure_video_pipeline

    entry = {
        "model": case.label,
        "img_size": case.img_size,
        "video_backend": spec.name,
        "threads": threads,
        "model_file": None,
        "error": None,
    }
    reason = models.not_applicable(case, spec) or skip_reason(spec)
    if reason:
        entry["error"] = f"skipped: {reason}"
        return entry
    try:
        path = models.model_path(case, spec, 1, workdir, image_dir, settings.calib_images)
        entry["model_file"] = path.name
        stats = measure_video_pipeline(
            path,
            settings.video,
            **spec.open_args(),
            threads=threads,
            frames=settings.video_frames,
            model_only_frames=min(settings.video_frames, 20),
            warmup=2,
            out_dir=out / "video" / f"{case.label}_{case.img_size}_{spec.name}_t{threads}",
        )
    except Exception as exc:
        entry["error"] = first_line(exc)
        return entry
    entry.update({k: stats[k] for k in VIDEO_FIELDS})
    return entry


VIDEO_FIELDS = (
    "backend",
    "resolution",
    "frames",
    "pipeline_fps",
    "pipeline_ms_per_frame",
    "model_only_ms",
    "model_only_fps",
    "overhead_pct",
    "end_to_end_ms_p50",
    "end_to_end_ms_p95",
)


def first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
