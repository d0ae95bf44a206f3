"""The three files of a benchmark run: ``bench.json``, ``bench.md`` and ``bench.png``."""

import importlib.util
import json
import logging
from pathlib import Path

from wscnet.atomic import atomic_path, atomic_write_text

log = logging.getLogger("benchmarks")

REQUIRED_COLUMNS = (
    "backend",
    "precision",
    "batch",
    "img_size",
    "min_ms",
    "mean_ms",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "images_per_s",
    "peak_mem_mb",
    "size_mb",
    "gflops_per_s",
    "top1_agreement",
)


REPORT_FILES = {"json": "bench.json", "markdown": "bench.md", "chart": "bench.png"}


def write_reports(out: Path, results: dict) -> dict[str, Path]:
    paths = {kind: out / name for kind, name in REPORT_FILES.items()}
    atomic_write_text(paths["json"], json.dumps(results, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown(results))
    if importlib.util.find_spec("matplotlib") is None:  # the lean runtime install
        log.info("no bench.png: matplotlib is not installed (it comes with the [train] extra)")
        del paths["chart"]
    else:
        write_chart(paths["chart"], results["rows"])
    return paths


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    """bench.md: the rows table, then the machine and settings, the video table, what was skipped."""
    lines = _rows_table(results["rows"]) + _machine_notes(results) + _video_table(results.get("video") or [])
    return "\n".join(lines + _skipped_notes(results["rows"])) + "\n"


def _rows_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | size | back-end | precision | batch | threads | median ms | p90 ms | p99 ms | min ms "
        "| images/s | GFLOP/s | % of peak | peak MB | file MB | top-1 agree | status |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (r for r in rows if r["status"] != "skipped"):
        head = (
            f"| {r['model']} | {r['img_size']} | {r['backend']} | {r['precision']} | {r['batch']} "
            f"| {r.get('threads', 0) or 'default'} |"
        )
        if r["status"] == "failed":
            lines.append(head + " " + "| " * 11 + f"failed: {r['reason']} |")
            continue
        gpu_note = f" (GPU {_num(r['gpu_median_ms'], 2)})" if r.get("gpu_median_ms") is not None else ""
        lines.append(
            f"{head} {_num(r['median_ms'], 2)}{gpu_note} | {_num(r['p90_ms'], 2)} | {_num(r['p99_ms'], 2)} "
            f"| {_num(r['min_ms'], 2)} | {_num(r['images_per_s'])} | {_num(r['gflops_per_s'])} "
            f"| {_num(r['pct_of_peak'])} | {_num(r['peak_mem_mb'], 0)} | {_num(r['size_mb'])} "
            f"| {_num(r['top1_agreement'], 3)} | {r['status']}"
            + (f" ({r['reason']})" if r["status"] == "failed validation" else "")
            + " |"
        )
    return lines


def _machine_notes(results: dict) -> list[str]:
    machine, peak, settings = results["machine"], results["peak"], results["settings"]
    gpu = machine.get("gpu")
    physical = f" ({machine['cpu_physical_cores']} physical)" if machine.get("cpu_physical_cores") else ""
    cpu = (
        f"{machine['cpu']}, {machine['cpu_logical_cores']} logical cores{physical}, "
        f"{machine['memory_gb']} GB, load average "
        f"{machine.get('load_avg_1m_start')} at the start and {machine.get('load_avg_1m_end')} at the end"
    )
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    peak_text = f"fp32 {_num(peak.get('fp32_gflops'))} GFLOP/s"
    if "fp16_gflops" in peak:
        peak_text += f", fp16 {_num(peak['fp16_gflops'])} GFLOP/s"
    if "int8_gops" in peak:
        peak_text += f", int8 {_num(peak['int8_gops'])} GOP/s"
    return [
        "",
        f"Machine: {cpu}; GPU: "
        + (f"{gpu['name']} (driver {gpu['driver']}, CUDA {gpu['cuda_runtime']})" if gpu else "none")
        + f". {versions}.",
        f"Measured peak ({peak['matmul_n']}² matrix product, same run): {peak_text}; "
        "% of peak compares each row with the peak of its precision (int8 rows with int8, "
        "others with fp32 on the CPU; GPU rows with the GPU's).",
        _settings_note(settings, results.get("validation_thresholds", {})),
    ]


def _settings_note(settings: dict, thresholds: dict) -> str:
    if thresholds:
        agreement = (
            f"top-1 agree = share of the {settings['agreement_images']} check images whose top class "
            "equals the PyTorch fp32 reference's (measured once per model file, by `export.parity`); "
            "a row that misses the parity targets of its precision ("
            + "; ".join(f"{p}: " + ", ".join(f"{k} {v}" for k, v in t.items()) for p, t in thresholds.items())
            + ") is marked `failed validation`."
        )
    else:
        agreement = "no top-1 agreement: torch is not installed here, so there is no PyTorch reference."
    return (
        f"Settings: warm-up {settings['warmup']} calls, then "
        + (
            f"{settings['iters']} timed calls"
            if settings.get("iters")
            else f"{settings['duration']} s of timed calls (at least {settings['min_iters']})"
        )
        + "; latency is host wall-clock per call with copies, input already pre-processed; "
        "images/s = batch / mean latency; GFLOP/s = model FLOPs × batch / median latency; "
        "peak MB = the measuring process's RSS high-water mark (one process per row); " + agreement
    )


def _video_table(video: list[dict]) -> list[str]:
    if not video:
        return []
    lines = [
        "",
        "| video pipeline | back-end | video | frames | pipeline fps | ms/frame "
        "| model-only ms | pipeline cost over model | end-to-end p50 / p95 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for v in video:
        name = f"{v['model']} @ {v['img_size']}"
        if v.get("error"):
            lines.append(f"| {name} | {v['video_backend']} | | | | | | | {v['error']} |")
            continue
        threads = f", {v['threads']} threads" if v.get("threads") else ""
        lines.append(
            f"| {name} | {v['video_backend']} ({v['model_file']}{threads}) | {v['resolution']} | {v['frames']} "
            f"| {_num(v['pipeline_fps'])} | {_num(v['pipeline_ms_per_frame'], 2)} "
            f"| {_num(v['model_only_ms'], 2)} | {v['overhead_pct']:+.1f} % "
            f"| {v['end_to_end_ms_p50']} / {v['end_to_end_ms_p95']} |"
        )
    return lines


def _skipped_notes(rows: list[dict]) -> list[str]:
    skipped: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if r["status"] == "skipped":
            skipped.setdefault((r["backend"], r["reason"]), set()).add(r["model"])
    notes = []
    if skipped:
        every_model = {r["model"] for r in rows}
        items = [
            f"`{backend}`" + ("" if models == every_model else f" ({', '.join(sorted(models))})") + f": {why}"
            for (backend, why), models in skipped.items()
        ]
        notes += ["", "Skipped: " + "; ".join(items) + "."]
    if any(r["top1_agreement"] is None and r["status"] not in ("skipped", "failed") for r in rows):
        notes += ["", "top-1 agree –: a given model file without a PyTorch reference (--reference CKPT)."]
    return notes


def write_chart(path: Path, rows: list[dict]) -> None:
    """Median ms per image of each back-end and precision, one panel per model, p90 whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    measured = [r for r in rows if r["status"] not in ("skipped", "failed")]
    panels = sorted({(r["model"], r["img_size"]) for r in measured}) or [("no rows measured", 0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (model, size) in zip(axes[0], panels):
        mine = [r for r in measured if (r["model"], r["img_size"]) == (model, size)]
        several = len({r.get("threads", 0) for r in mine}) > 1
        label = {id(r): f"{r['backend']} t{r.get('threads', 0)}" if several else r["backend"] for r in mine}
        backends = list(dict.fromkeys(label[id(r)] for r in mine))
        batches = sorted({r["batch"] for r in mine})
        width = 0.8 / max(1, len(batches))
        for j, batch in enumerate(batches):
            by_backend = {label[id(r)]: r for r in mine if r["batch"] == batch}
            x = np.arange(len(backends)) + (j - (len(batches) - 1) / 2) * width
            median = [by_backend[b]["median_ms"] / batch if b in by_backend else np.nan for b in backends]
            p90 = [by_backend[b]["p90_ms"] / batch if b in by_backend else np.nan for b in backends]
            upper = np.clip(np.subtract(p90, median), 0, None)
            ax.bar(x, median, width, label=f"batch {batch}", yerr=[np.zeros_like(upper), upper], capsize=3)
        ax.set_xticks(np.arange(len(backends)), backends, rotation=30, ha="right")
        ax.set_title(f"{model} @ {size}" if size else model)
        ax.set_ylabel("ms per image (median, whisker: p90)")
        if batches:
            ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    left_out = sorted({f"{r['backend']} ({r['status']})" for r in rows if r["status"] in ("skipped", "failed")})
    if left_out:
        fig.text(0.01, 0.01, "not measured: " + ", ".join(left_out), fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.04 if left_out else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
