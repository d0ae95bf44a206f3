"""Does the runtime classify camera frames of any shape as `eval` classifies the pictures?

The test split of a checkpoint's data set is shown to the runtime as frames of other shapes:
- "wider scene": the picture continues beyond the square (reflect padding, so objects keep their
  true shape and size, as in a real 4:3 / 16:9 / 9:16 camera frame around them);
- "stretched": the square picture resized to the frame's shape.
Each frame goes through the runtime's Python API (``runtime.Model.predict``: the one frame →
tensor function, the exported model, the contract's views averaged) under the model's own input
contract (the default path) and under each single geometry as an override. The
reference is `eval`'s top-1 on the pictures themselves. A 16:9 video made from the test pictures
(each placed at the left, centre or right of a wider scene) is then run through the runtime's
real pipeline, and the sentiment map's placement on the frame is measured against the picture's
ground-truth map placed the same way.

    python cli.py study aspect-accuracy runs/demo/run/best.pt runs/demo/export/model.onnx \
        --out runs/demo/aspect
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from export.views import camera_frame, wider_scene
from runtime.api import Model
from runtime.contract import GEOMETRIES

ASPECTS = {"1:1": (1, 1), "4:3": (4, 3), "16:9": (16, 9), "9:16": (9, 16)}
VIDEO_SIZE = (640, 360)
PLACEMENTS = (0.0, 0.5, 1.0)  # picture at the left edge, centre, right edge of the wider frame


def eval_labels(checkpoint: Path, paths: list[Path]) -> np.ndarray:
    """`eval`'s top-1 on each picture (the checkpoint's own contract, PyTorch)."""
    from wscnet.checkpoint import checkpoint_contract, load_checkpoint
    from wscnet.data import eval_transform, open_rgb

    model, ckpt = load_checkpoint(checkpoint)
    transform = eval_transform(checkpoint_contract(ckpt, checkpoint))
    labels = []
    with torch.inference_mode():
        for start in range(0, len(paths), 32):
            batch = torch.stack([transform(open_rgb(p)) for p in paths[start : start + 32]])
            labels.append(model(batch).logits.argmax(1).numpy())
    return np.concatenate(labels)


def runtime_labels(model: Path, frames: list[np.ndarray], geometry: str | None) -> np.ndarray:
    """The runtime's top-1 on each frame (``geometry``: None follows the model's contract)."""
    with Model(model, device="cpu", resize=geometry) as runtime:
        return np.array([int(np.argmax(runtime.predict(frame).probs)) for frame in frames])


def accuracy_table(checkpoint: Path, model: Path, paths: list[Path], truth: np.ndarray) -> dict:
    pictures = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    reference = eval_labels(checkpoint, paths)
    with Model(model, device="cpu") as runtime:
        contract = runtime.metadata.contract.to_dict()
    table = {"eval_accuracy": float((reference == truth).mean()), "contract": contract, "rows": []}
    for name, aspect in ASPECTS.items():
        for kind in ("wider scene", "stretched") if aspect != (1, 1) else ("as is",):
            frames = [make_frame(p, aspect, kind) for p in pictures]
            row = {"frame": name, "kind": kind}
            for geometry in (None, *GEOMETRIES):
                got = runtime_labels(model, frames, geometry)
                key = "default" if geometry is None else geometry
                row[key] = {
                    "accuracy": float((got == truth).mean()),
                    "agrees_with_eval": float((got == reference).mean()),
                }
            table["rows"].append(row)
            print(f"  {name:>5} {kind:<12} default {row['default']['accuracy']:.3f}", file=sys.stderr)
    return table


def make_frame(picture: np.ndarray, aspect: tuple[int, int], kind: str) -> np.ndarray:
    return picture if kind == "as is" else camera_frame(picture, aspect, kind)


def write_video(paths: list[Path], video: Path, frames_per_picture: int = 3) -> list[dict]:
    """A 16:9 video: each picture as a wider scene at the left, centre or right; returns per frame
    the picture's box and the ground-truth label/map path."""
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, VIDEO_SIZE)
    placed = []
    for i, path in enumerate(paths):
        picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
        scale = VIDEO_SIZE[1] / picture.shape[0]
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        place = PLACEMENTS[i % len(PLACEMENTS)]
        frame, box = wider_scene(picture, VIDEO_SIZE, place)
        for _ in range(frames_per_picture):
            writer.write(frame)
            placed.append({"picture": str(path), "box": box})
    writer.release()
    return placed


def map_placement(model: Path, video: Path, placed: list[dict], gt_maps: dict[str, Path]) -> dict:
    """Decode the video, take the runtime's sentiment map over each frame (``Prediction.sentiment_map``)
    and compare it with the picture's ground truth placed where the picture is."""
    capture = cv2.VideoCapture(str(video))
    peak_hits, inside, correlations = [], [], []
    with Model(model, device="cpu") as runtime:
        for record in placed:
            ok, frame = capture.read()
            if not ok:
                break
            predicted = np.nan_to_num(runtime.predict(frame).sentiment_map)  # NaN: outside what the model saw
            truth = placed_truth(gt_maps[record["picture"]], record["box"], frame.shape[:2])
            peak = np.unravel_index(np.argmax(predicted), predicted.shape)
            peak_hits.append(truth[peak] > 0.5)
            left, top, w, h = record["box"]
            inside.append(predicted[top : top + h, left : left + w].sum() / max(predicted.sum(), 1e-6))
            correlations.append(np.corrcoef(predicted.ravel(), truth.ravel())[0, 1])
    return {
        "frames": len(peak_hits),
        "peak_in_object": float(np.mean(peak_hits)),
        "map_mass_on_picture": float(np.mean(inside)),
        "picture_share_of_frame": float(
            np.mean([b["box"][2] * b["box"][3] for b in placed]) / (VIDEO_SIZE[0] * VIDEO_SIZE[1])
        ),
        "correlation_with_ground_truth": float(np.nanmean(correlations)),
    }


def placed_truth(gt_path: Path, box: tuple, shape: tuple[int, int]) -> np.ndarray:
    left, top, w, h = box
    gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    truth = np.zeros(shape, np.float32)
    truth[top : top + h, left : left + w] = cv2.resize(gt, (w, h), interpolation=cv2.INTER_LINEAR)
    return truth


def video_run(model: Path, samples, out: Path) -> dict:
    """The 16:9 video through the real pipeline (labels from its JSONL) and the map placement."""
    from runtime.video import run_video

    video, jsonl = out / "test-16x9.mp4", out / "test-16x9.jsonl"
    placed = write_video([s.path for s in samples], video)
    stats = run_video(model, str(video), save=out / "test-16x9-overlay.mp4", jsonl=jsonl, display=False, progress=False)
    truth = {str(s.path): s.label for s in samples}
    names = json.loads(jsonl.read_text().splitlines()[0])["probabilities"].keys()
    index = {n: i for i, n in enumerate(names)}
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    hits = [index[r["label"]] == truth[p["picture"]] for r, p in zip(rows, placed)]
    result = {"video": str(video), "frames": len(rows), "fps": stats.fps, "accuracy": float(np.mean(hits))}
    result["placement"] = map_placement(model, video, placed, {str(s.path): s.gt_map for s in samples})
    return result


def markdown(table: dict, video: dict | None) -> str:
    geometries = ("default", *GEOMETRIES)
    contract = table["contract"]
    views = " + ".join([contract["geometry"], *contract.get("extra_views", [])])
    lines = [
        f"eval top-1 on the pictures: {table['eval_accuracy']:.3f}; model contract: "
        f"{views} at {contract['input_size']} px",
        "",
        "| frame | kind | " + " | ".join(f"runtime {g}" for g in geometries) + " | default vs eval (points) |",
        "|---|---|" + "---:|" * (len(geometries) + 1),
    ]
    for row in table["rows"]:
        cells = " | ".join(f"{row[g]['accuracy']:.3f}" for g in geometries)
        delta = (row["default"]["accuracy"] - table["eval_accuracy"]) * 100
        lines.append(f"| {row['frame']} | {row['kind']} | {cells} | {delta:+.1f} |")
    if video:
        p = video["placement"]
        lines += [
            "",
            f"16:9 video ({video['frames']} frames, 640x360, pictures at left / centre / right): "
            f"runtime accuracy {video['accuracy']:.3f} at {video['fps']:.0f} fps; map peak inside the "
            f"object {p['peak_in_object'] * 100:.1f} % of frames; {p['map_mass_on_picture'] * 100:.1f} % "
            f"of the map's mass on the picture (which is {p['picture_share_of_frame'] * 100:.0f} % of the "
            f"frame); correlation with the placed ground truth {p['correlation_with_ground_truth']:.3f}",
        ]
    return "\n".join(lines) + "\n"


def print_aspect_accuracy(checkpoint: Path, model: Path, data: Path | None, out: Path, video: bool = True) -> None:
    """``python cli.py study aspect-accuracy``: writes ``aspect.json`` / ``aspect.md`` and prints the table."""
    from wscnet.checkpoint import read_checkpoint, recorded_data_source
    from wscnet.data import load_index

    source = recorded_data_source(read_checkpoint(checkpoint)) or {}
    data = data or Path(source["data"])
    samples = load_index(data, split="test").samples
    paths, truth = [s.path for s in samples], np.array([s.label for s in samples])
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(paths)} test pictures of {data}", file=sys.stderr)
    table = accuracy_table(checkpoint, model, paths, truth)
    run = video_run(model, [s for s in samples if s.gt_map], out) if video else None
    (out / "aspect.json").write_text(json.dumps({"table": table, "video": run}, indent=2) + "\n")
    text = markdown(table, run)
    (out / "aspect.md").write_text(text)
    print(text)
