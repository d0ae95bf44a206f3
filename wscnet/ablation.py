"""The ablation table (paper Tables III-IV): WSCNet k=1 / k=4, with and without coupling, and
the CAM baseline, trained alike and measured on the same split; over several data sets,
training recipes and seeds, reported as mean ± standard deviation over the seeds, and each WSCNet
run against the CAM run of the same seed (paired.py)."""

import json
import statistics
from pathlib import Path

from .atomic import atomic_path, atomic_write_text
from .errors import UserError
from .log import log
from .paired import EARLY_EPOCH, paired_rows
from .paired import markdown as paired_markdown
from .paired import write_chart as write_paired_chart

# name -> model settings; everything else is shared by all variants
VARIANTS = {
    "wscnet-k4": {"head": "wscnet", "k": 4, "coupling": "both"},
    "wscnet-k1": {"head": "wscnet", "k": 1, "coupling": "both"},
    "wscnet-k4-no-coupling": {"head": "wscnet", "k": 4, "coupling": "none"},
    "wscnet-k1-no-coupling": {"head": "wscnet", "k": 1, "coupling": "none"},
    "wscnet-k4-local": {"head": "wscnet", "k": 4, "coupling": "local"},
    "cam": {"head": "cam", "k": 1, "coupling": "none"},
}
DEFAULT_VARIANTS = ("wscnet-k4", "wscnet-k1", "wscnet-k4-no-coupling", "wscnet-k1-no-coupling", "cam")
METRICS = ("accuracy", "f", "mae", "accuracy_detection_branch", "precision", "recall")


TABLE_FILES = ("ablation.md", "ablation.json")


def run_ablation(
    *,
    data,
    out,
    only=None,
    seeds=(0,),
    recipes=("scratch-flags",),
    split: str = "test",
    train_missing: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    **train_settings,
) -> str:
    """Train (or reuse a finished run of) every set × recipe × variant × seed, evaluate each on
    ``split``; write ablation.md, ablation.json and ablation.png into ``out``. With
    ``train_missing=False`` runs not yet finished are left out of the table and listed. Runs validated
    every epoch also give curves-<set>.png and speed.md (write_validation_curves)."""
    from .training.recipes import RECIPES

    sets = [Path(d) for d in ([data] if isinstance(data, (str, Path)) else data)]
    names = list(only) if only else list(DEFAULT_VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown ablation variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    bad = [r for r in recipes if r not in RECIPES]
    if bad:
        raise UserError(f"unknown recipe(s) {', '.join(bad)}; choose from {', '.join(RECIPES)}")
    if len({s.name for s in sets}) < len(sets):
        raise UserError("--data folders must have different names (they name the table's rows)")
    out = Path(out)
    check_ablation_out(out, resume or not train_missing, overwrite)
    train_settings = {**train_settings, "overwrite": overwrite}
    jobs, missing = [], []
    for data_dir in sets:
        for recipe in recipes:
            for name in names:
                for seed in seeds:
                    run_dir = out / data_dir.name / _run_recipe(name, recipe) / name / f"seed{seed}"
                    if not train_missing and not _finished(run_dir, train_settings.get("epochs", 1)):
                        missing.append(f"{data_dir.name}/{recipe}/{name}/seed{seed}")
                        continue
                    jobs.append((run_dir, data_dir, name, recipe, seed))
    options = {job: _run_options(*job, train_settings) for job in jobs}
    for (run_dir, *_), opts in options.items():  # before any training: a stale run would mix trainers
        _check_reusable(run_dir, opts)
    runs = []
    for (run_dir, data_dir, name, recipe, seed), opts in options.items():
        result = _train_and_evaluate(run_dir, f"{data_dir.name} / {recipe} / {name} / seed {seed}", opts, split)
        runs.append(
            {
                "set": data_dir.name,
                "recipe": recipe,
                "variant": name,
                "seed": seed,
                "run": str(run_dir),
                **VARIANTS[name],
                **_metrics(result),
            }
        )
    rows = summarise(runs)
    table = markdown_table(rows, split, len(seeds))
    against_cam = paired_rows(runs)
    if against_cam:
        table += "\n\n" + paired_markdown(against_cam)
    if missing:
        table += "\n\nNot finished, left out: " + ", ".join(missing) + "."
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", table + "\n")
    atomic_write_text(
        out / "ablation.json",
        json.dumps(
            {
                "split": split,
                "seeds": list(seeds),
                "recipes": list(recipes),
                "settings": train_settings,
                "rows": rows,
                "against_cam": against_cam,
                "runs": runs,
                "missing": missing,
            },
            indent=2,
        ),
    )
    write_chart(out / "ablation.png", rows)
    if against_cam:
        write_paired_chart(out / "against-cam.png", against_cam)
    write_diagnostics(out, runs)
    speed = write_validation_curves(out, runs)
    if speed:
        atomic_write_text(out / "speed.md", speed + "\n")
    return table


def validation_curves(run_dirs: list[Path]) -> dict[str, list[float]]:
    """Per-epoch validation accuracy and map F (and training accuracy) of the runs, mean over them
    (cut to the shortest); epochs without a validation are NaN."""
    import math

    each = [json.loads((Path(d) / "history.json").read_text())["epochs"] for d in run_dirs]
    n = min(len(h) for h in each)
    curves = {}
    for key in ("val_accuracy", "val_detection_f", "train_accuracy"):
        per_epoch = [[h[i].get(key) for h in each] for i in range(n)]
        curves[key] = [statistics.fmean(v) if None not in v else math.nan for v in per_epoch]
    return curves


def epochs_to_reach(curve: list[float], share: float = 0.95) -> int | None:
    """First epoch (1-based) whose value is at least ``share`` of the last epoch's; None if the
    last epoch was not validated."""
    import math

    if not curve or math.isnan(curve[-1]):
        return None
    return next(i + 1 for i, v in enumerate(curve) if not math.isnan(v) and v >= share * curve[-1])


def _curve_groups(runs: list[dict]) -> dict[str, dict[str, list[Path]]]:
    """set -> "variant (recipe)" -> run folders (CAM's runs, shared by several recipes, once)."""
    groups: dict[str, dict[str, list[Path]]] = {}
    shown: set[tuple] = set()
    for run in runs:
        dirs = [
            Path(r["run"])
            for r in runs
            if (r["set"], r["recipe"], r["variant"]) == (run["set"], run["recipe"], run["variant"])
        ]
        if tuple(dirs) not in shown:
            shown.add(tuple(dirs))
            groups.setdefault(run["set"], {})[f"{run['variant']} ({run['recipe']})"] = dirs
    return groups


def write_validation_curves(out: Path, runs: list[dict], at_epoch: int = EARLY_EPOCH) -> str:
    """curves-<set>.png (validation accuracy and F per epoch, mean over seeds, one picture per set)
    and a markdown table of the training speed: accuracy at ``at_epoch`` and at the end, and the
    epochs each row needs to reach 95 % of its final validation accuracy. '' if nothing was validated
    every epoch."""
    rows = []
    for data_set, groups in _curve_groups(runs).items():
        curves = {label: validation_curves(dirs) for label, dirs in groups.items()}
        if all(epochs_to_reach(c["val_accuracy"]) is None for c in curves.values()):
            continue
        _plot_curves(out / f"curves-{data_set}.png", data_set, curves, {k: len(v) for k, v in groups.items()})
        for label, c in curves.items():
            acc = c["val_accuracy"]
            at = acc[at_epoch - 1] if len(acc) >= at_epoch else float("nan")
            rows.append(
                f"| {data_set} | {label} | {len(groups[label])} | {_fmt(at, None)} | "
                f"{_fmt(acc[-1], None)} | {_fmt(c['val_detection_f'][-1], None)} | "
                f"{epochs_to_reach(acc) or '-'} |"
            )
    if not rows:
        return ""
    head = (
        f"Validation split, mean over seeds, per epoch (curves-<set>.png): accuracy at epoch {at_epoch} "
        "and at the end, F at the end, first epoch at 95 % of the final accuracy.\n\n"
        f"| set | run | seeds | val accuracy, epoch {at_epoch} | val accuracy, last | val F, last | "
        "epochs to 95 % |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    return head + "\n" + "\n".join(rows)


def _plot_curves(path: Path, data_set: str, curves: dict, seeds: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    panels = (
        ("val_accuracy", "validation accuracy"),
        ("val_detection_f", "validation map F"),
        ("train_accuracy", "training accuracy"),
    )
    for ax, (key, title) in zip(axes, panels):
        for label, c in curves.items():
            ax.plot(range(1, len(c[key]) + 1), c[key], marker="o", ms=3, label=f"{label}, {seeds[label]} seeds")
        ax.set_title(f"{data_set}: {title} (mean over seeds)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_diagnostics(out: Path, runs: list[dict]) -> None:
    """When the runs logged diagnostics (--diagnostics-every): diagnostics.md and diagnostics.png,
    per-epoch curves per set and recipe/variant, averaged over the seeds."""
    from .training import diagnostics_summary as summary

    logged = [r for r in runs if (Path(r["run"]) / "diagnostics.jsonl").is_file()]
    if not logged:
        return
    panels: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    shown: set[tuple] = set()  # CAM's runs serve several recipes: one curve
    for data_set in dict.fromkeys(r["set"] for r in logged):
        for recipe, variant in dict.fromkeys((r["recipe"], r["variant"]) for r in logged if r["set"] == data_set):
            dirs = [
                Path(r["run"]) for r in logged if (r["set"], r["recipe"], r["variant"]) == (data_set, recipe, variant)
            ]
            if tuple(dirs) in shown:
                continue
            shown.add(tuple(dirs))
            panels.setdefault(data_set, {})[f"{variant} ({recipe})"] = summary.group_curves(dirs)
            sizes[f"{data_set} {variant} ({recipe})"] = len(dirs)
    flat = {f"{s} {label}": curves for s, groups in panels.items() for label, curves in groups.items()}
    atomic_write_text(out / "diagnostics.md", summary.markdown(flat, sizes) + "\n")
    summary.write_chart(out / "diagnostics.png", panels)


def _run_recipe(variant: str, recipe: str) -> str:
    """CAM has no detection branch, so recipes that differ only in WSCNet-only options train the
    same CAM: they share one run folder, named after the first such recipe."""
    from .training.recipes import RECIPES, WSCNET_ONLY_FIELDS

    if VARIANTS[variant]["head"] != "cam":
        return recipe

    def rest(name: str) -> dict:
        return {k: v for k, v in RECIPES[name].items() if k not in WSCNET_ONLY_FIELDS}

    return next(r for r in RECIPES if rest(r) == rest(recipe))


def _run_options(run_dir: Path, data_dir: Path, name: str, recipe: str, seed: int, train_settings: dict):
    from .training import TrainOptions
    from .training.recipes import apply_recipe

    settings = {**train_settings, **VARIANTS[name], "seed": seed}
    return apply_recipe(TrainOptions(data=str(data_dir), out=str(run_dir), **settings), recipe)


def _train_and_evaluate(run_dir: Path, label: str, options, split: str) -> dict:
    from .evaluate import evaluate_checkpoint
    from .training import train

    if not options.overwrite and _finished(run_dir, options.epochs):
        log.info(f"ablation {label}: reusing the finished run in {run_dir}")
    else:
        options.resume = not options.overwrite and (run_dir / "last.pt").is_file()
        log.info(f"ablation {label}: training")
        train(options)
    cached = run_dir / f"eval-{split}.json"  # the evaluation of this very last.pt, from an earlier table
    if cached.is_file() and cached.stat().st_mtime >= (run_dir / "last.pt").stat().st_mtime:
        return json.loads(cached.read_text())
    result = evaluate_checkpoint(
        run_dir / "last.pt", options.data, split=split, workers=options.workers, device=options.device
    )
    atomic_write_text(cached, json.dumps(result))
    return result


# options that do not change the trained weights (CAM also ignores WSCNET_ONLY_FIELDS)
_NOT_WEIGHTS = ("data", "out", "resume", "overwrite", "workers", "device", "recipe", "diagnostics_every", "val_every")


def _check_reusable(run_dir: Path, options) -> None:
    """A run in ``run_dir`` (finished or to be resumed) must have been trained with ``options``:
    a run from an older trainer or other flags would silently mix two set-ups in one table."""
    from .training.recipes import WSCNET_ONLY_FIELDS

    history = run_dir / "history.json"
    if options.overwrite or not history.is_file():
        return
    try:
        recorded = json.loads(history.read_text())["options"]
    except (ValueError, KeyError):
        return
    ignored = set(_NOT_WEIGHTS) | (set(WSCNET_ONLY_FIELDS) if options.head == "cam" else set())
    was = type(options).from_dict(recorded).to_dict()
    changed = [
        f"{key} {was[key]!r} (now {value!r})"
        for key, value in options.to_dict().items()
        if key not in ignored and was[key] != value
    ]
    if changed:
        raise UserError(
            f"{run_dir}: trained with other settings: {', '.join(changed[:4])}; pass --overwrite "
            "to train it again or choose another --out"
        )


def check_ablation_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds an ablation (its table or any run) unless asked."""
    from runtime.validate import check_output_folder

    from .training.options import RUN_FILES

    check_output_folder(out, "--out")
    if resume and overwrite:
        raise UserError("--resume reuses the runs in --out and --overwrite replaces them: pass one")
    found = [name for name in TABLE_FILES if (out / name).exists()]
    found += sorted({str(p.parent.relative_to(out)) for f in RUN_FILES for p in out.rglob(f)}) if out.is_dir() else []
    if found and not (resume or overwrite):
        raise UserError(
            f"{out}: already holds an ablation ({', '.join(found[:4])}); pass --resume to "
            "reuse and continue its runs or --overwrite to train them again"
        )


def _finished(run_dir: Path, epochs: int) -> bool:
    history = run_dir / "history.json"
    if not (run_dir / "last.pt").is_file() or not history.is_file():
        return False
    try:
        return len(json.loads(history.read_text())["epochs"]) >= epochs
    except (ValueError, KeyError):
        return False


def _metrics(result: dict) -> dict:
    det = result.get("detection", {})
    return {
        "accuracy": result.get("accuracy"),
        "accuracy_detection_branch": result.get("accuracy_detection_branch"),
        "mae": det.get("mae"),
        "precision": det.get("precision"),
        "recall": det.get("recall"),
        "f": det.get("f"),
        "num_images": result.get("num_images"),
    }


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (set, recipe, variant): mean and sample standard deviation over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["set"], run["recipe"], run["variant"]), []).append(run)
    rows = []
    for (data_set, recipe, variant), members in groups.items():
        row = {
            "set": data_set,
            "recipe": recipe,
            "variant": variant,
            **VARIANTS[variant],
            "seeds": len(members),
            "num_images": members[0]["num_images"],
        }
        for metric in METRICS:
            values = [m[metric] for m in members if m[metric] is not None]
            row[metric] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], split: str, seeds: int) -> str:
    spread = f"mean ± sample standard deviation over up to {seeds} seeds" if seeds > 1 else "one seed"
    images = rows[0]["num_images"] if rows else 0
    head = (
        "| set | recipe | variant | seeds | accuracy (cls) | F | MAE | accuracy (det) | P | R |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [
        f"Ablation on the {split} split ({images} images per set; {spread}; classification "
        "branch = the model's answer; CAM's detection column is its classifier).",
        "",
        head,
    ]
    for r in rows:
        cells = [r["set"], r["recipe"], r["variant"], str(r["seeds"])] + [_fmt(r[m], r[f"{m}_std"]) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value, spread) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if spread is None else f"{value:.3f} ± {spread:.3f}"


def write_chart(path: Path, rows: list[dict]) -> None:
    """Accuracy and detection F per set, one bar per recipe/variant, whiskers = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = list(dict.fromkeys(r["set"] for r in rows))
    bars = list(dict.fromkeys((r["recipe"], r["variant"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(sets) * len(bars) / 2 + 3), 4.2), squeeze=False)
    width = 0.8 / max(1, len(bars))
    for ax, metric, title in zip(axes[0], ("accuracy", "f"), ("accuracy (classification branch)", "detection F")):
        for j, (recipe, variant) in enumerate(bars):
            found = {r["set"]: r for r in rows if (r["recipe"], r["variant"]) == (recipe, variant)}
            mean = [found[s][metric] if s in found and found[s][metric] is not None else np.nan for s in sets]
            std = [found[s][f"{metric}_std"] or 0.0 if s in found else 0.0 for s in sets]
            x = np.arange(len(sets)) + (j - (len(bars) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=std, capsize=3, label=f"{variant} ({recipe})")
        ax.set_xticks(np.arange(len(sets)), sets)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
