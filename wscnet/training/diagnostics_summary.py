"""Per-epoch summary of finished runs' ``diagnostics.jsonl`` (see diagnostics.py), averaged over
the runs of a group (e.g. the seeds of one ablation row): a markdown table and a chart.

What the curves answer: does a run learn late (training accuracy), is the gradient clip holding
it back (the factor the clip applied and the backbone gradient before it), is softmax(v) still
uniform (its entropy over ln C) and how much the coupled half of Eq. (4) carries."""

import json
import math
import statistics
from pathlib import Path

from ..atomic import atomic_path

CURVES = {
    "train_accuracy": "training accuracy",
    "train_loss_cls": "classification loss (ln C = chance)",
    "clipped": "clip factor applied (1 = none)",
    "grad_backbone": "backbone gradient norm (before clip)",
    "entropy_v": "entropy of softmax(v) / ln C",
    "coupling_scale": "coupling scale ‖GAP(M∘F)‖ / ‖GAP(F)‖",
    "logit_global": "‖logits from GAP(F)‖",
    "logit_coupled": "‖logits from GAP(M∘F)‖",
    "coupled_brake": "coupled-half brake (1 = none)",
    "coupled_input_brake": "coupled-half input brake (1 = none)",
    "coupled_feature_share": "share of L_cls's gradient via M∘F into F",
    "coupled_weight_factor": "coupled-half weight cap factor (1 = none)",
}
FROM_HISTORY = ("train_accuracy", "train_loss_cls")


def run_curves(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch means of one run's diagnostics, with its training accuracy per epoch; a
    quantity the run did not log (CAM has no softmax(v)) is NaN."""
    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "diagnostics.jsonl").read_text().splitlines() if line.strip()]
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    epochs = sorted({r["epoch"] for r in rows})
    curves = {key: [h.get(key, math.nan) for h in history][: len(epochs)] for key in FROM_HISTORY}
    for key in CURVES:
        if key not in FROM_HISTORY:
            curves[key] = [_mean([r[key] for r in rows if r["epoch"] == e and key in r]) for e in epochs]
    return curves


def group_curves(run_dirs: list[Path]) -> dict[str, list[float]]:
    """Element-wise mean over the runs (cut to the shortest)."""
    each = [run_curves(d) for d in run_dirs]
    n = min(len(c["train_accuracy"]) for c in each)
    return {key: [_mean([c[key][i] for c in each]) for i in range(n)] for key in CURVES}


def markdown(groups: dict[str, dict[str, list[float]]], runs_per_group: dict[str, int]) -> str:
    head = "| run | epoch | " + " | ".join(CURVES.values()) + " |"
    lines = [
        "Per-epoch means of the logged steps (diagnostics.jsonl), averaged over the runs of each "
        "row group; '-' = not logged (CAM has no detection branch).",
        "",
        head,
        "|" + " --- |" * (len(CURVES) + 2),
    ]
    for label, curves in groups.items():
        for i in range(len(curves["train_accuracy"])):
            cells = ["-" if math.isnan(curves[k][i]) else f"{curves[k][i]:.3g}" for k in CURVES]
            lines.append(f"| {label} ({runs_per_group[label]}) | {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(path: Path, panels: dict[str, dict[str, dict[str, list[float]]]]) -> None:
    """One row of panels per key of ``panels`` (e.g. a data set), one panel per quantity, one line
    per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), len(CURVES), figsize=(3.1 * len(CURVES), 2.6 * len(panels)), squeeze=False)
    for row, (title, groups) in zip(axes, panels.items()):
        for ax, (key, name) in zip(row, CURVES.items()):
            for label, curves in groups.items():
                ax.plot(range(1, len(curves[key]) + 1), curves[key], marker="o", ms=3, label=label)
            ax.set_title(f"{title}: {name}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan
