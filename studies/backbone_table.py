"""The backbone table: for each trained checkpoint and precision, what an edge user chooses by.

    python cli.py study backbone-table runs/m/*/best.pt --data runs/m/data --heldout runs/m/heldout \\
        --out runs/backbone-table

Per checkpoint: ``export`` writes FP32, FP16 and INT8 ONNX (INT8 calibrated on ``--data``'s
training images) and checks each against PyTorch on the held-out images (``export.parity``).
Then per precision (PyTorch eager as the reference row): accuracy and detection F on ``--data``'s
test split (``wscnet.evaluate``, the exported files run through the runtime back-end), batch-1
latency and peak memory in a process of its own (``benchmarks.worker``, as ``bench`` measures),
and the runtime's video pipeline fps on a 640×480 clip (``benchmarks.video_pipeline``).
Writes ``backbones.json`` and ``backbones.md`` into ``--out``; rows already in its
``backbones.json`` for an unchanged checkpoint are kept (delete the file to measure again).
"""

import json
from pathlib import Path

import numpy as np
import torch

from wscnet.atomic import atomic_write_text

PRECISIONS = (("torch", None), ("ort", "fp32"), ("ort-fp16", "fp16"), ("ort-int8", "int8"))  # export step kinds


class ExportedModel:
    """An exported file through its runtime back-end, called as ``wscnet.evaluate`` calls a WSCNet."""

    def __init__(self, path: Path, threads: int) -> None:
        from runtime.backends import open_backend

        self.backend = open_backend(path, device="cpu", threads=threads)

    def eval(self) -> "ExportedModel":
        return self

    def __call__(self, images: torch.Tensor):
        from wscnet.model import WSCNetOutput

        out = self.backend.infer(np.ascontiguousarray(images.numpy(), dtype=np.float32))
        probs = torch.from_numpy(out["probs"]).float()
        # log-probabilities: softmax gives the probabilities back, argmax is unchanged
        return WSCNetOutput(
            torch.log(probs.clamp_min(1e-12)),
            torch.from_numpy(out["det_scores"]).float(),
            torch.from_numpy(out["sentiment_map"])[:, 0].float(),
        )


def exported_file(ckpt: Path, kind: str) -> Path:
    """Where ``export_all`` puts the ``kind`` step's model (named by the export pipeline)."""
    from export.exporter import ExportRequest

    return ExportRequest(checkpoint=ckpt, out=ckpt.parent / "export").file(kind)


def export_all(ckpt: Path, data: Path, heldout: Path, calib_n: int, parity_n: int) -> dict:
    """FP32/FP16/INT8 files beside the checkpoint (reused while newer than it) and their parity."""
    from export.exporter import ExportRequest, run_export

    out = ckpt.parent / "export"
    files = [exported_file(ckpt, kind) for _, kind in PRECISIONS if kind] + [out / "parity.json"]
    fresh = all(f.is_file() and f.stat().st_mtime >= ckpt.stat().st_mtime for f in files)
    if not fresh:
        # stale files are this table's own cache of an older checkpoint: replace them
        run_export(
            ExportRequest(
                checkpoint=ckpt,
                out=out,
                fp16=True,
                int8=True,
                calib=data,
                calib_n=calib_n,
                parity_data=heldout,
                parity_n=parity_n,
                overwrite=True,
            ),
            echo=lambda line: None,
        )
    return json.loads((out / "parity.json").read_text())


def split_accuracy(model, data: Path, contract, num_classes: int) -> dict:
    """Accuracy and detection F on the test split, images as ``eval`` loads them."""
    from wscnet.data import ImageDataset, eval_transform, load_index
    from wscnet.evaluate import evaluate_dataset

    test_set = ImageDataset(load_index(str(data), split="test"), eval_transform(contract), with_maps=True)
    with torch.no_grad():
        result = evaluate_dataset(model, test_set, num_classes=num_classes, batch_size=8, desc="test")
    return {"accuracy": result["accuracy"], "detection_f": result.get("detection", {}).get("f")}


def latency_and_memory(backend: str, path: Path, images: Path, workdir: Path, threads: int, duration: float) -> dict:
    """Batch-1 latency and peak RSS, measured by bench's worker in a fresh process."""
    from benchmarks.bench import BenchSettings, run_worker
    from benchmarks.engines import SPECS

    settings = BenchSettings(
        backends=[backend], batches=[1], warmup=3, duration=duration, min_iters=10, threads=threads
    )
    result = run_worker(SPECS[backend], path, 1, images, settings, workdir, predict=False)
    if "error" in result:
        return {"error": result["error"]}
    return {
        "median_ms": result["host_ms"]["median"],
        "min_ms": result["host_ms"]["min"],
        "p90_ms": result["host_ms"]["p90"],
        "peak_mem_mb": result["peak_mem_mb"],
    }


def video_fps(path: Path, video: Path, frames: int, threads: int, out: Path) -> dict:
    from benchmarks.video_pipeline import measure_video_pipeline

    stats = measure_video_pipeline(
        path, video, threads=threads, frames=frames, model_only_frames=min(frames, 10), warmup=2, rounds=1, out_dir=out
    )
    return {"video_fps": stats["pipeline_fps"], "video_model_only_ms": stats["model_only_ms"]}


def from_scratch(ckpt: Path) -> bool | None:
    """Whether the run started from random weights (its last.pt's training arguments say)."""
    for candidate in (ckpt, ckpt.with_name("last.pt")):
        if candidate.is_file():
            args = (torch.load(candidate, map_location="cpu", weights_only=True).get("train_state") or {}).get("args")
            if args is not None:
                return args.get("pretrained") is None
    return None


def checkpoint_rows(ckpt: Path, opts: dict, workdir: Path) -> list[dict]:
    from export.images import find_images, load_batch
    from wscnet.checkpoint import checkpoint_contract, load_checkpoint

    model, meta = load_checkpoint(ckpt)
    contract = checkpoint_contract(meta, ckpt)
    arch, size = meta["model_config"]["arch"], int(meta["input_size"])
    parity = export_all(ckpt, opts["data"], opts["heldout"], opts["calib_n"], opts["parity_n"])
    images = workdir / f"check_{arch}.npy"
    contract = checkpoint_contract(meta, ckpt)
    np.save(images, load_batch(find_images(opts["heldout"], 4), contract))
    common = {
        "backbone": arch,
        "img_size": size,
        "from_scratch": from_scratch(ckpt),
        "epochs": meta.get("epoch"),
        "checkpoint": str(ckpt),
        "checkpoint_mtime": ckpt.stat().st_mtime,
    }
    rows = []
    for backend, kind in PRECISIONS:
        path = ckpt if kind is None else exported_file(ckpt, kind)
        row = {**common, "backend": backend, "model_file": str(path), "size_mb": path.stat().st_size / 1e6}
        runner = model if kind is None else ExportedModel(path, opts["threads"])
        row.update(split_accuracy(runner, opts["data"], contract, meta["model_config"]["num_classes"]))
        row.update(latency_and_memory(backend, path, images, workdir, opts["threads"], opts["duration"]))
        if kind is not None:
            report = parity[path.name]
            row.update(
                {
                    "precision": report["precision"],
                    "parity_passed": report["passed"],
                    "top1_agreement": report["top1_agreement"],
                    "map_correlation": report["map_correlation"],
                }
            )
            if opts["video"] is not None:
                row.update(
                    video_fps(
                        path,
                        opts["video"],
                        opts["video_frames"],
                        opts["threads"],
                        workdir / "video" / f"{arch}_{backend}",
                    )
                )
        else:
            row["precision"] = "fp32 (PyTorch)"
        rows.append(row)
    return rows


def _f(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], machine: str) -> str:
    lines = [
        "| backbone | trained | input | precision | test acc | det F | parity (top-1, map corr) "
        "| batch-1 ms median / min | video fps | model MB | peak MB |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        trained = {True: "from scratch", False: "pretrained", None: "?"}[r["from_scratch"]]
        trained += f", epoch {r['epochs']}"
        parity = (
            "reference"
            if "parity_passed" not in r
            else (
                f"{'pass' if r['parity_passed'] else 'FAIL'} ({r['top1_agreement'] * 100:.1f} %, {r['map_correlation']:.3f})"
            )
        )
        lines.append(
            f"| {r['backbone']} | {trained} | {r['img_size']} | {r['precision']} | {_f(r['accuracy'], 3)} "
            f"| {_f(r['detection_f'], 3)} | {parity} | {_f(r.get('median_ms'), 2)} / {_f(r.get('min_ms'), 2)} | {_f(r.get('video_fps'), 1)} "
            f"| {_f(r['size_mb'], 1)} | {_f(r.get('peak_mem_mb'), 0)} |"
        )
    return "\n".join(lines) + f"\n\n{machine}\n"


def run_backbone_table(
    checkpoints: list[Path],
    *,
    data: Path,
    heldout: Path,
    out: Path,
    threads: int,
    duration: float,
    video_frames: int,
    calib_n: int,
    parity_n: int,
) -> None:
    """One table over trained backbones: accuracy, detection F, parity, latency, fps, size, memory."""
    from tqdm import tqdm

    from benchmarks.machine import describe_machine
    from benchmarks.video_pipeline import write_test_video

    torch.set_num_threads(max(1, threads))
    workdir = out / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    video = write_test_video(workdir / "clip-640x480.mp4", frames=video_frames) if video_frames else None
    opts = {
        "data": data,
        "heldout": heldout,
        "threads": threads,
        "duration": duration,
        "video": video,
        "video_frames": video_frames,
        "calib_n": calib_n,
        "parity_n": parity_n,
    }
    known = json.loads((out / "backbones.json").read_text()) if (out / "backbones.json").is_file() else []
    rows = []
    for ckpt in tqdm(checkpoints, desc="backbones", unit="ckpt"):
        kept = [
            r for r in known if r["checkpoint"] == str(ckpt) and r["checkpoint_mtime"] == Path(ckpt).stat().st_mtime
        ]
        rows += kept or checkpoint_rows(Path(ckpt), opts, workdir)
        atomic_write_text(out / "backbones.json", json.dumps(rows, indent=2) + "\n")
    machine = describe_machine()
    note = (
        f"Machine: {machine['cpu']}, {machine['cpu_logical_cores']} logical cores, load average "
        f"{machine.get('load_avg_1m_start')} at the start; {threads} intra-op thread(s)."
    )
    atomic_write_text(out / "backbones.md", markdown(rows, note))
    print((out / "backbones.md").read_text())
