"""Peak memory and wall time of the long jobs, each in a process of its own (issue 14).

    python cli.py study memory-bounds --work runs/memory [--jobs int8,fp16,parity,eval,agreement,runtime]
        [--models resnet18@224,resnet101@448] [--calib-n 8,64,256] [--sets 50,200]

Rows: ``export --int8 --skip-parity`` at each ``--calib-n``; ``export --fp16``; ``parity`` of the INT8 model on
held-out images and ``eval --ten-crop`` at each ``--sets`` size; ``agreement``: scales of the
bounded calibration against onnxruntime's one-shot one on the same images; ``runtime``: ``webcam``
on a long clip, RSS early and late in the run. Peak memory is the
job's RSS high-water mark from ``os.wait4`` (this driver imports no torch, so a child inherits
only this small process's footprint). Results go to ``--work/NAME.json`` and ``NAME.md`` (``--results``),
row by row, so a long run can be read while it goes.

The checkpoints come from ``wscnet.tiny_model.make_trained_checkpoint`` (trained at 64 px, 30 SGD
steps, as ``bench`` does; the input size is then set to the target: the weights fit any size).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from wscnet.memory import current_rss_bytes

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.5


def run_measured(cmd: list[str], log: Path, samples: list | None = None) -> dict:
    """Run ``cmd``; its exit code, wall seconds, peak RSS in MB (its own, from wait4) and the
    machine's 1-minute load average as it ended (how shared the CPU was).

    With ``samples``, the child's RSS in MB is appended to it every ``SAMPLE_S`` seconds while it runs.
    """
    start = time.perf_counter()
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        child = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=_env())
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG if samples is not None else 0)
            if pid:
                break
            samples.append(current_rss_bytes(child.pid) / 2**20)
            time.sleep(SAMPLE_S)
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": child.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_mb": round(usage.ru_maxrss / 1024),
        "load_1m": round(os.getloadavg()[0], 1),
    }


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def prepare(work: Path, models: list[str]) -> None:
    """Checkpoints and image folders (made once, in a child process: torch stays out of here)."""
    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from wscnet.tiny_model import make_trained_checkpoint, write_image_folder\n"
        "from wscnet.checkpoint import save_checkpoint\n"
        "work = Path(sys.argv[1])\n"
        "for token in sys.argv[2:]:\n"
        "    arch, size = token.split('@')\n"
        "    path = work / f'{arch}_{size}.pt'\n"
        "    if path.is_file(): continue\n"
        "    make_trained_checkpoint(path, arch=arch, num_classes=8, size=64, steps=30)\n"
        "    ckpt = torch.load(path, map_location='cpu', weights_only=True)\n"
        "    ckpt['input_size'] = int(size)\n"
        "    save_checkpoint(path, ckpt)\n"
        "for name, per_class, seed in (('calib', 40, 1), ('heldout', 40, 7)):\n"
        "    if not (work / name).is_dir(): write_image_folder(work / name, 8, per_class, 256, seed=seed)\n"
    )
    subprocess.run(python("-c", script, str(work), *models), cwd=REPO, env=_env(), check=True)


def int8_rows(work: Path, models: list[str], calib_ns: list[int]):
    for token in models:
        arch, size = token.split("@")
        for n in calib_ns:
            out = work / f"{arch}_{size}_n{n}"
            cmd = python(
                "cli.py",
                "export",
                str(work / f"{arch}_{size}.pt"),
                "--int8",
                "--calib",
                str(work / "calib"),
                "--calib-n",
                str(n),
                "--skip-parity",
                "--out",
                str(out),
            )
            yield {"job": "export --int8", "model": token, "n": n, **run_measured(cmd, work / "log.txt")}


def fp16_rows(work: Path, models: list[str]):
    for token in models:
        arch, size = token.split("@")
        cmd = python(
            "cli.py",
            "export",
            str(work / f"{arch}_{size}.pt"),
            "--fp16",
            "--skip-parity",
            "--out",
            str(work / f"{arch}_{size}_fp16"),
        )
        yield {"job": "export --fp16", "model": token, "n": 0, **run_measured(cmd, work / "log.txt")}


def parity_rows(work: Path, models: list[str], sets: list[int], calib_n: int):
    for token in models:
        arch, size = token.split("@")
        model = work / f"{arch}_{size}_n{calib_n}" / "model.int8.onnx"
        for n in sets:
            yield parity_row(work, model, token, n, "parity (int8)")


def parity_row(work: Path, model: Path, token: str, n: int, job: str) -> dict:
    """``parity`` of ``model`` against its checkpoint on ``n`` held-out images, with the agreement it reports."""
    arch, size = token.split("@")
    cmd = python(
        "cli.py", "parity", str(model), str(work / f"{arch}_{size}.pt"), "--data", str(work / "heldout"), "--n", str(n)
    )
    row = {"job": job, "model": token, "n": n, **run_measured(cmd, work / "log.txt")}
    report = json.loads((model.parent / "parity.json").read_text())[model.name]
    row.update(top1=report["top1_agreement"], map_corr=round(report["map_correlation"], 5))
    return row


def eval_rows(work: Path, models: list[str], sets: list[int]):
    for token in models:
        arch, size = token.split("@")
        for n in sets:
            data = work / f"evalset_{n}"
            if not data.is_dir():
                subprocess.run(
                    python(
                        "-c",
                        "import sys; from wscnet.tiny_model import write_image_folder as w; "
                        "w(sys.argv[1], 8, int(sys.argv[2]) // 8, 256, seed=5)",
                        str(data),
                        str(n),
                    ),
                    cwd=REPO,
                    env=_env(),
                    check=True,
                )
            cmd = python(
                "cli.py", "eval", str(work / f"{arch}_{size}.pt"), "--data", str(data), "--split", "all", "--ten-crop"
            )
            yield {"job": "eval --ten-crop", "model": token, "n": n, **run_measured(cmd, work / "log.txt")}


def agreement_rows(work: Path, models: list[str], n: int, methods: list[str], parity_n: int):
    """Scales of the bounded calibration vs onnxruntime's one-shot one (``n`` images), then the
    bounded model's parity on ``parity_n`` held-out images."""
    for token in models:
        for method in methods:
            arch, size = token.split("@")
            kept = work / f"agreement_{arch}_{size}"
            cmd = python(
                "cli.py",
                "study",
                "scale-agreement",
                str(work / f"{arch}_{size}_n8" / "model.onnx"),
                str(work / "calib"),
                "--n",
                str(n),
                "--method",
                method,
                "--keep",
                str(kept),
                "--json",
                str(work / f"agreement_{arch}_{size}_{method}.json"),
            )
            row = {"job": f"scale agreement ({method})", "model": token, "n": n, **run_measured(cmd, work / "log.txt")}
            row.update(json.loads((work / f"agreement_{arch}_{size}_{method}.json").read_text()))
            yield row
            if row["rc"] == 0:
                bounded = kept / f"bounded-{method}.int8.onnx"
                yield parity_row(work, bounded, token, parity_n, f"parity (int8, {method})")


LOOP_SCRIPT = """
import sys
from pathlib import Path
import cv2
from benchmarks.video_pipeline import write_test_video
base, out, frames = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
if not base.is_file():
    write_test_video(base, frames=LOOP_FRAMES)
writer, written = None, 0
while written < frames:
    capture = cv2.VideoCapture(str(base))
    ok, frame = capture.read()
    while ok and written < frames:
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, frame.shape[1::-1])
        writer.write(frame)
        written += 1
        ok, frame = capture.read()
    capture.release()
writer.release()
"""
LOOP_FRAMES = 300


def long_clip(work: Path, frames: int) -> Path:
    """A ``frames``-long 640×480 clip: ``video_pipeline``'s test scene, its first 300 frames looped
    (drawing every frame would take longer than the run it feeds). Made in a child process."""
    clip = work / f"clip_{frames}.mp4"
    if not clip.is_file():
        script = LOOP_SCRIPT.replace("LOOP_FRAMES", str(LOOP_FRAMES))
        subprocess.run(
            python("-c", script, str(work / f"clip_base_{LOOP_FRAMES}.mp4"), str(clip), str(frames)),
            cwd=REPO,
            env=_env(),
            check=True,
        )
    return clip


def runtime_rows(work: Path, models: list[str], frames: list[int]):
    """``webcam`` on a long 640×480 clip (looped) with each model's INT8 file (``--calib-n 8``):
    RSS in the first vs the last quarter of the run."""
    for token in models:
        arch, size = token.split("@")
        model = work / f"{arch}_{size}_n8" / "model.int8.onnx"
        for n in frames:
            clip = long_clip(work, n)
            samples: list[float] = []
            cmd = python(
                "cli.py",
                "webcam",
                "--model",
                str(model),
                "--source",
                str(clip),
                "--no-display",
                "--save",
                str(work / "clip_out.mp4"),
                "--jsonl",
                str(work / "clip_out.jsonl"),
            )
            row = {
                "job": "webcam (int8, 640x480 clip)",
                "model": token,
                "n": n,
                **run_measured(cmd, work / "log.txt", samples),
            }
            quarter = max(1, len(samples) // 4)
            row.update(
                rss_first_quarter_mb=round(max(samples[:quarter])), rss_last_quarter_mb=round(max(samples[-quarter:]))
            )
            yield row


def write_table(rows: list[dict], work: Path, name: str) -> None:
    (work / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| job | model | images | peak RSS MB | wall s | load | exit | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        notes = ", ".join(
            f"{k} {r[k]}"
            for k in (
                "top1",
                "map_corr",
                "equal_scales",
                "max_rel_diff",
                "bounded_peak_mb",
                "one_shot_peak_mb",
                "rss_first_quarter_mb",
                "rss_last_quarter_mb",
            )
            if k in r
        )
        load = r.get("load_1m", "–")
        cells = [r["job"], r["model"], r["n"], r["peak_mb"], r["wall_s"], load, r["rc"], notes]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (work / f"{name}.md").write_text("\n".join(lines) + "\n")


JOB_NAMES = ("int8", "fp16", "parity", "eval", "agreement", "runtime")


def run_memory_bounds(
    work: Path,
    jobs: list[str],
    models: list[str],
    calib_ns: list[int],
    sets: list[int],
    agreement_n: int,
    frames: list[int],
    methods: list[str],
    results: str,
) -> None:
    """``python cli.py study memory-bounds``: every job's rows, written to the table as they come."""
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, models)
    table = work / f"{results}.json"
    rows = json.loads(table.read_text()) if table.is_file() else []
    steps = {
        "int8": lambda: int8_rows(work, models, calib_ns),
        "fp16": lambda: fp16_rows(work, models),
        "parity": lambda: parity_rows(work, models, sets, max(calib_ns)),
        "eval": lambda: eval_rows(work, models, sets),
        "agreement": lambda: agreement_rows(work, models, agreement_n, methods, max(sets)),
        "runtime": lambda: runtime_rows(work, models, frames),
    }
    assert tuple(steps) == JOB_NAMES
    for job in jobs:
        for row in steps[job]():
            rows = [r for r in rows if (r["job"], r["model"], r["n"]) != (row["job"], row["model"], row["n"])] + [row]
            write_table(rows, work, results)
            print(json.dumps(row), flush=True)
