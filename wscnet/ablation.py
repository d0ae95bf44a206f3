"""The ablation table (paper Tables III-IV on one set): WSCNet k=1 / k=4, with and without
coupling, and the CAM baseline, trained alike and measured on the same split."""

import json
import sys
from enum import Enum
from pathlib import Path

from .atomic import atomic_write_text
from .errors import UserError

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
AblationVariant = Enum("AblationVariant", {name: name for name in VARIANTS}, type=str)  # --only's choices
TABLE_FILES = ("ablation.md", "ablation.json")


def run_ablation(*, data, out, only=None, split: str = "test", resume: bool = False,
                 overwrite: bool = False, **train_settings) -> str:
    """Train each variant (with ``resume``: reuse a finished run, continue an unfinished one),
    evaluate it, write ablation.md/.json."""
    from .evaluate import evaluate_checkpoint
    from .training import TrainOptions, train

    names = list(only) if only else list(DEFAULT_VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown ablation variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    out = Path(out)
    check_ablation_out(out, resume, overwrite)
    rows = []
    for name in names:
        run_dir = out / name
        options = TrainOptions(data=str(data), out=str(run_dir), **train_settings, **VARIANTS[name])
        if resume and _finished(run_dir, options.epochs):
            print(f"ablation {name}: reusing the finished run in {run_dir}", file=sys.stderr)
        else:
            options.resume = resume and (run_dir / "last.pt").is_file()
            options.overwrite = overwrite
            print(f"ablation {name}: training", file=sys.stderr)
            train(options)
        result = evaluate_checkpoint(run_dir / "last.pt", data, split=split,
                                     workers=options.workers, device=options.device)
        rows.append(_row(name, VARIANTS[name], result))
    table = markdown_table(rows, split)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", table + "\n")
    atomic_write_text(out / "ablation.json", json.dumps(
        {"split": split, "settings": {k: v for k, v in train_settings.items()}, "rows": rows}, indent=2))
    return table


def check_ablation_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds an ablation (its table or a variant's run) unless asked."""
    from runtime.validate import check_output_folder

    from .training.options import RUN_FILES

    check_output_folder(out, "--out")
    if resume and overwrite:
        raise UserError("--resume reuses the runs in --out and --overwrite replaces them: pass one")
    found = [name for name in TABLE_FILES if (out / name).exists()]
    found += [name for name in VARIANTS if any((out / name / f).exists() for f in RUN_FILES)]
    if found and not (resume or overwrite):
        raise UserError(f"{out}: already holds an ablation ({', '.join(found)}); pass --resume to "
                        "reuse and continue its runs or --overwrite to train them again")


def _finished(run_dir: Path, epochs: int) -> bool:
    history = run_dir / "history.json"
    if not (run_dir / "last.pt").is_file() or not history.is_file():
        return False
    try:
        return len(json.loads(history.read_text())["epochs"]) >= epochs
    except (ValueError, KeyError):
        return False


def _row(name: str, settings: dict, result: dict) -> dict:
    det = result.get("detection", {})
    return {
        "variant": name, **settings,
        "accuracy": result.get("accuracy"),
        "accuracy_detection_branch": result.get("accuracy_detection_branch"),
        "mae": det.get("mae"), "precision": det.get("precision"),
        "recall": det.get("recall"), "f": det.get("f"),
        "correct_maps": result.get("error_modes", {}).get("fractions", {}).get("correct"),
    }


def markdown_table(rows: list[dict], split: str) -> str:
    head = ("| variant | head | k | coupling | accuracy (cls) | accuracy (det) | MAE | P | R | F |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [f"Ablation on the {split} split (classification branch = the model's answer; "
             "CAM's detection column is its classifier).", "", head]
    for r in rows:
        cells = [r["variant"], r["head"], str(r["k"]), r["coupling"]]
        cells += [_fmt(r[k]) for k in ("accuracy", "accuracy_detection_branch", "mae", "precision", "recall", "f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
