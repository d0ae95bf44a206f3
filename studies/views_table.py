"""One view or two, per model: what export measured and recorded (``view_decision``), and what the
runtime's default then does on camera-shaped frames, against ``eval`` on the pictures themselves.

For each (checkpoint, exported model) pair: the held-out pictures of the checkpoint's data set
(the split export measured on) as 16:9 / 4:3 / 9:16 frames, stretched and inside a wider scene.
Per row: ``eval``'s top-1 on the pictures (PyTorch, the checkpoint's contract), the candidates'
accuracies the file records, and the runtime's default (``runtime.Model.predict`` under the file's
contract) measured again here, with its distance to ``eval`` (target: within 0.02).

    python cli.py study views runs/demo/run/best.pt runs/demo/export/model.onnx [CKPT MODEL ...]
"""

from pathlib import Path

import cv2
import numpy as np

from export.views import ASPECTS, KINDS, camera_frame, held_out_pictures
from runtime.api import Model

TARGET = 0.02  # the runtime's default within this of eval on every row
SHOWN = ("squash", "crop", "letterbox", "squash+crop mean", "squash+crop max_confidence")


def model_rows(checkpoint: Path, model_path: Path, n: int = 200) -> dict:
    """The table of one model: per camera-frame row, eval, the recorded candidates, the runtime default
    (on the pictures the file's decision was measured on, or ``n`` when it records none)."""
    from wscnet.checkpoint import read_checkpoint, recorded_data_source

    from .aspect_accuracy import eval_labels

    with Model(model_path, device="cpu") as runtime:
        decision = runtime.metadata.view_decision
    source = recorded_data_source(read_checkpoint(checkpoint))
    # the pictures the decision was measured on (the same spread of the test split), else ``n``
    paths, truth, description = held_out_pictures(source, decision["images"] if decision else n)
    eval_accuracy = float((eval_labels(checkpoint, paths) == truth).mean())
    pictures = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    with Model(model_path, device="cpu") as runtime:
        views = " + ".join(runtime.metadata.contract.views)
        rows = []
        for aspect, size in ASPECTS.items():
            for kind in KINDS:
                frames = [camera_frame(p, size, kind) for p in pictures]
                labels = np.array([int(np.argmax(runtime.predict(f).probs)) for f in frames])
                rows.append({"row": f"{aspect} {kind}", "default": float((labels == truth).mean())})
    for row in rows:
        row["candidates"] = {name: c["rows"][row["row"]] for name, c in (decision or {}).get("candidates", {}).items()}
    return {
        "model": str(model_path),
        "data": description,
        "eval": eval_accuracy,
        "views": views,
        "decision": decision,
        "rows": rows,
    }


def markdown(tables: list[dict]) -> str:
    lines = []
    for table in tables:
        decision = table["decision"] or {}
        lines += [
            f"**{table['model']}** ({table['data']}): `eval` on the pictures {table['eval']:.3f}; "
            f"recorded views: **{table['views']}**"
            + (f" ({decision['reason']})" if decision else " (no view decision in the file)"),
            "",
            "| frame | " + " | ".join(SHOWN) + " | runtime default | default − eval |",
            "|---|" + "---:|" * (len(SHOWN) + 2),
        ]
        for row in table["rows"]:
            cells = " | ".join(_cell(row["candidates"].get(name)) for name in SHOWN)
            gap = row["default"] - table["eval"]
            flag = "" if abs(gap) <= TARGET else " ✗"
            lines.append(f"| {row['row']} | {cells} | {row['default']:.3f} | {gap:+.3f}{flag} |")
        lines.append("")
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_views_table(pairs: list[tuple[Path, Path]], n: int = 200) -> str:
    text = markdown([model_rows(checkpoint, model, n) for checkpoint, model in pairs])
    print(text)
    return text
