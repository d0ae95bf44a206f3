"""The ablation table (paper Tables III-IV on one set): WSCNet k=1 / k=4, with and without
coupling, and the CAM baseline, trained alike and measured on the same split."""

import json
import sys
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


def run_ablation(*, data, out, only=None, split: str = "test", **train_settings) -> str:
    """Train (or reuse a finished run of) each variant, evaluate it, write ablation.md/.json."""
    from .evaluate import evaluate_checkpoint
    from .training import TrainOptions, train

    names = list(only) if only else list(DEFAULT_VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown ablation variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    out = Path(out)
    rows = []
    for name in names:
        run_dir = out / name
        options = TrainOptions(data=str(data), out=str(run_dir), **train_settings, **VARIANTS[name])
        if _finished(run_dir, options.epochs):
            print(f"ablation {name}: reusing the finished run in {run_dir}", file=sys.stderr)
        else:
            options.resume = (run_dir / "last.pt").is_file()
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
