"""Each WSCNet run against the CAM run trained on the same set with the same recipe and seed.

A from-scratch recipe is judged on these paired differences (docs/scratch-recipe.md): by epoch
``EARLY_EPOCH`` WSCNet's validation accuracy is within ``EARLY_MARGIN`` of CAM's, and at the end its
test accuracy and map F are at least CAM's, as means over the seeds both heads have. Seeds differ
more than recipes do on an easy set, so each difference comes with its standard error over the seeds
and the count of seeds WSCNet wins, ties and loses."""

import json
import math
import statistics
from pathlib import Path

from .atomic import atomic_path

EARLY_EPOCH = 10
EARLY_MARGIN = 0.05
TIE = 1e-9  # float noise: differences this small count as level


def val_accuracy_at(run_dir: Path, epoch: int = EARLY_EPOCH) -> float | None:
    """The run's validation accuracy after ``epoch`` (1-based); None if that epoch was not validated."""
    try:
        epochs = json.loads((Path(run_dir) / "history.json").read_text())["epochs"]
    except (OSError, ValueError, KeyError):
        return None
    value = epochs[epoch - 1].get("val_accuracy") if len(epochs) >= epoch else None
    return None if value is None or math.isnan(value) else value


def _mean_and_error(values: list[float]) -> tuple[float, float | None]:
    error = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return statistics.fmean(values), error


def _pairs(runs: list[dict]) -> dict[tuple, list[tuple[dict, dict]]]:
    """(set, recipe, WSCNet variant) -> [(WSCNet run, CAM run)] over the seeds both have."""
    cam = {(r["set"], r["recipe"], r["seed"]): r for r in runs if r["head"] == "cam"}
    pairs: dict[tuple, list[tuple[dict, dict]]] = {}
    for run in runs:
        baseline = cam.get((run["set"], run["recipe"], run["seed"]))
        if run["head"] != "cam" and baseline is not None:
            pairs.setdefault((run["set"], run["recipe"], run["variant"]), []).append((run, baseline))
    return pairs


def paired_rows(runs: list[dict]) -> list[dict]:
    """One row per (set, recipe, WSCNet variant) with a CAM run of the same seed: the mean paired
    difference of test accuracy and F (± standard error), the seeds won/tied/lost on accuracy, both
    heads' mean validation accuracy at ``EARLY_EPOCH``, and whether each acceptance criterion holds."""
    rows = []
    for (data_set, recipe, variant), pairs in _pairs(runs).items():
        accuracy = [w["accuracy"] - c["accuracy"] for w, c in pairs]
        f = [w["f"] - c["f"] for w, c in pairs if w["f"] is not None and c["f"] is not None]
        early = [(val_accuracy_at(w["run"]), val_accuracy_at(c["run"])) for w, c in pairs]
        early = [(w, c) for w, c in early if w is not None and c is not None]
        row = {"set": data_set, "recipe": recipe, "variant": variant, "seeds": len(pairs)}
        row["accuracy_deltas"], row["f_deltas"] = accuracy, f
        row["accuracy_delta"], row["accuracy_delta_error"] = _mean_and_error(accuracy)
        row["wins"] = sum(d > TIE for d in accuracy)
        row["losses"] = sum(d < -TIE for d in accuracy)
        row["ties"] = len(accuracy) - row["wins"] - row["losses"]
        row["f_delta"], row["f_delta_error"] = _mean_and_error(f) if f else (None, None)
        row["early"] = statistics.fmean(w for w, _ in early) if early else None
        row["early_cam"] = statistics.fmean(c for _, c in early) if early else None
        row["early_ok"] = None if row["early"] is None else row["early"] >= row["early_cam"] - EARLY_MARGIN - TIE
        row["accuracy_ok"] = row["accuracy_delta"] >= -TIE
        row["f_ok"] = None if row["f_delta"] is None else row["f_delta"] >= -TIE
        rows.append(row)
    return rows


def _signed(value: float | None, error: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" + ("" if error is None else f" ± {error:.3f}")


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "no")


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table; '' without any pair."""
    if not rows:
        return ""
    lines = [
        "Each WSCNet run against the CAM run of the same set, recipe and seed (test split; "
        "mean paired difference ± its standard error over the seeds; validation accuracy at "
        f"epoch {EARLY_EPOCH}, mean over the seeds).",
        "",
        "| set | recipe | variant | seeds | Δ accuracy | won/tied/lost | Δ F | "
        f"val accuracy, epoch {EARLY_EPOCH} (CAM) | within {EARLY_MARGIN} by epoch {EARLY_EPOCH} | "
        "accuracy ≥ CAM | F ≥ CAM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        early = "-" if r["early"] is None else f"{r['early']:.3f} ({r['early_cam']:.3f})"
        cells = [
            r["set"],
            r["recipe"],
            r["variant"],
            str(r["seeds"]),
            _signed(r["accuracy_delta"], r["accuracy_delta_error"]),
            f"{r['wins']}/{r['ties']}/{r['losses']}",
            _signed(r["f_delta"], r["f_delta_error"]),
            early,
            _verdict(r["early_ok"]),
            _verdict(r["accuracy_ok"]),
            _verdict(r["f_ok"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(path: Path, rows: list[dict]) -> None:
    """Per set, each recipe's paired differences from CAM: one dot per seed, the mean with its
    standard error as a bar; accuracy on the left, map F on the right, 0 = level with CAM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    series = list(dict.fromkeys((r["recipe"], r["variant"]) for r in rows))
    width = 0.8 / len(series)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.2 * len(sets) * len(series) + 3), 4.0))
    for ax, key, title in zip(axes, ("accuracy", "f"), ("test accuracy", "map F")):
        for j, (recipe, variant) in enumerate(series):
            found = {r["set"]: r for r in rows if (r["recipe"], r["variant"]) == (recipe, variant)}
            for i, data_set in enumerate(sets):
                row, x = found.get(data_set), i + (j - (len(series) - 1) / 2) * width
                if row is None or row[f"{key}_delta"] is None:
                    continue
                dots = row[f"{key}_deltas"]
                spread = [x + (k - (len(dots) - 1) / 2) * width * 0.1 for k in range(len(dots))]
                ax.scatter(spread, dots, s=12, alpha=0.5, color=f"C{j}")
                error = row[f"{key}_delta_error"] or 0.0
                label = f"{variant} ({recipe})" if i == 0 else None
                ax.errorbar(x, row[f"{key}_delta"], yerr=error, fmt="D", color=f"C{j}", capsize=4, label=label)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(sets)), sets)
        ax.set_title(f"{title}: WSCNet − CAM", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("one dot per seed, against CAM's run of the same seed; diamond: mean ± standard error", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
