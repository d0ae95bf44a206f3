"""The CLI never replaces a user's work unasked and never reports a failure as a success.

Everything runs as a user would: ``python cli.py ...`` in a subprocess, on a real run made by
``train`` (resnet18, 32 px, one epoch on the tiny synthetic set), its real ONNX export, real
videos and images. Refusals are asserted as exit code, one ``error:`` line, nothing on stdout and
the files on disk unchanged by checksum.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper
from runtime_fixtures import write_video

REPO = Path(__file__).resolve().parent.parent
SIZE = 32


def cli(*args, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The refusal: exit ``code``, exactly one stderr line ``error: …``, nothing on stdout."""
    assert proc.returncode == code, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert proc.stdout == ""
    return lines[0]


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (hidden ones too), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def train_args(data: Path, out: Path, epochs: int = 1) -> list:
    return [
        "train",
        "--data",
        data,
        "--out",
        out,
        "--arch",
        "resnet18",
        "--img-size",
        SIZE,
        "--epochs",
        epochs,
        "--batch-size",
        8,
        "--workers",
        0,
        "--device",
        "cpu",
        "--lr",
        0.01,
        "--head-lr",
        0.01,
    ]


def logged_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def work(tiny_roi_set, tmp_path_factory) -> dict:
    """A run trained by the CLI, its FP32 export (with provenance) and a small video."""
    from export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("safety")
    data = root / "data"
    shutil.copytree(tiny_roi_set, data)
    run = root / "run"
    proc = cli(*train_args(data, run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = export_onnx(run / "best.pt", root / "export" / "model.onnx")
    video = write_video(root / "clip.avi", frames=3)
    image = sorted((data / "images" / "joy").iterdir())[0]
    return {
        "root": root,
        "data": data,
        "run": run,
        "ckpt": run / "best.pt",
        "model": model,
        "video": video,
        "image": image,
    }


def perturbed_copy(model: Path, out: Path) -> Path:
    """The model with its classifier bias pushed towards class 0: same metadata and provenance,
    different answers (what a broken conversion would give)."""
    proto = onnx.load(str(model))
    (bias,) = [init for init in proto.graph.initializer if init.name.endswith("classifier.bias")]
    values = numpy_helper.to_array(bias).copy()
    values[0] += 50.0
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(proto, str(out))
    return out


# --- 1. nothing a user made is replaced without being asked ------------------------------------


def test_train_refuses_an_existing_run_and_leaves_it_unchanged(work):
    before = checksums(work["run"])
    line = one_error_line(cli(*train_args(work["data"], work["run"])))
    assert line == (
        f"error: {work['run']}: already holds a training run (last.pt, best.pt, history.json, "
        "train_log.jsonl); pass --resume to continue it or --overwrite to replace it"
    )
    assert checksums(work["run"]) == before


def test_resume_continues_the_log_and_overwrite_restarts_it_without_repeated_epochs(work, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(work["run"], run)
    proc = cli(*train_args(work["data"], run, epochs=2), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert logged_epochs(run) == [1, 2]
    assert [e["epoch"] for e in json.loads((run / "history.json").read_text())["epochs"]] == [1, 2]
    line = one_error_line(cli(*train_args(work["data"], run), "--resume", "--overwrite"))
    assert "pass one" in line
    old_last = checksums(run)["last.pt"]
    proc = cli(*train_args(work["data"], run), "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert logged_epochs(run) == [1]
    assert checksums(run)["last.pt"] != old_last


def test_synth_keeps_an_existing_set_unless_overwrite(tmp_path):
    out = tmp_path / "set"
    assert cli("synth", out, "--n-per-class", 3, "--size", 32).returncode == 0
    before = checksums(out)
    same = cli("synth", out, "--n-per-class", 3, "--size", 32)
    assert same.returncode == 0 and "nothing written" in same.stderr
    line = one_error_line(cli("synth", out, "--n-per-class", 2, "--size", 32))
    assert "already holds a synthetic set with other settings (3 per class, 32 px, seed 0)" in line
    assert checksums(out) == before
    assert cli("synth", out, "--n-per-class", 2, "--size", 32, "--overwrite").returncode == 0
    assert len(list((out / "images" / "joy").iterdir())) == 2


def test_export_refuses_to_replace_a_model_unless_overwrite(work, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"a model someone made by hand")
    before = checksums(out)
    line = one_error_line(cli("export", work["ckpt"], "--out", out, "--skip-parity"))
    assert line == (
        f"error: {out}: already holds model.onnx; pass --overwrite to replace them or --out to write elsewhere"
    )
    assert checksums(out) == before
    proc = cli("export", work["ckpt"], "--out", out, "--skip-parity", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert onnx.load(str(out / "model.onnx")).graph.input[0].name == "image"


@pytest.mark.parametrize(
    "command, marker, message",
    [
        (["bench", "resnet18@64", "--iters", 1], "bench.json", "already holds benchmark results (bench.json)"),
        (["ablation", "--epochs", 1], "ablation.json", "already holds an ablation (ablation.json); pass --resume"),
    ],
)
def test_bench_and_ablation_refuse_earlier_results(work, tmp_path, command, marker, message):
    out = tmp_path / "results"
    out.mkdir()
    (out / marker).write_text('{"mine": true}\n')
    before = checksums(out)
    extra = ["--data", work["data"]] if command[0] == "ablation" else []
    line = one_error_line(cli(*command, *extra, "--out", out))
    assert line.startswith(f"error: {out}: {message}")
    assert checksums(out) == before


def test_ablation_passes_amp_to_every_run_and_records_it(work, tmp_path):
    # --no-train tabulates without training: the settings the runs would get land in ablation.json
    for flag, expected in (("--no-amp", False), ("--amp", True)):
        out = tmp_path / flag.strip("-")
        proc = cli("ablation", "--data", work["data"], "--out", out, "--only", "cam", "--epochs", 1, "--no-train", flag)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads((out / "ablation.json").read_text())
        assert report["settings"]["amp"] is expected
        assert report["missing"] == [f"{Path(work['data']).name}/scratch-flags/cam/seed0"]


# --- 2. provenance, and checks that use it --------------------------------------------------------


def test_exported_model_records_checkpoint_hash_path_epoch_and_data(work):
    props = {p.key: p.value for p in onnx.load(str(work["model"])).metadata_props}
    assert props["checkpoint_sha256"] == hashlib.sha256(work["ckpt"].read_bytes()).hexdigest()
    assert props["checkpoint_path"] == str(work["ckpt"].resolve())
    assert props["checkpoint_epoch"] == "1"
    assert props["training_data"] == str(work["data"].resolve())


def test_parity_without_ckpt_uses_the_recorded_checkpoint_not_the_newest(work, tmp_path):
    from export.testing import make_trained_checkpoint

    decoy = make_trained_checkpoint(tmp_path / "runs" / "decoy" / "best.pt", size=64, steps=1)
    os.utime(decoy)  # the newest best.pt under runs/: parity must not take it
    model = shutil.copy(work["model"], tmp_path / "model.onnx")
    proc = cli("parity", model, "--n", 4, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"using the checkpoint model.onnx was exported from: {work['ckpt'].resolve()}" in proc.stderr
    assert "PASS" in proc.stdout
    assert json.loads((tmp_path / "parity.json").read_text())["model.onnx"]["passed"] is True


def other_weights_at_64_px(ckpt_path: Path, out: Path) -> Path:
    """The same classes and architecture, other weights, trained at 64 px: another checkpoint."""
    import torch

    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["input_size"] = 64
    ckpt["state_dict"]["classifier.bias"] = ckpt["state_dict"]["classifier.bias"] + 1.0
    torch.save(ckpt, out)
    return out


@pytest.mark.parametrize("named", ["sha256", "has classes"])
def test_parity_refuses_a_checkpoint_the_model_did_not_come_from(work, tmp_path, named):
    from export.testing import make_trained_checkpoint

    if named == "sha256":
        other = other_weights_at_64_px(work["ckpt"], tmp_path / "other.pt")
    else:
        other = make_trained_checkpoint(tmp_path / "other.pt", num_classes=4, size=SIZE, steps=1)
    folder = tmp_path / "exp"
    folder.mkdir()
    model = shutil.copy(work["model"], folder / "model.onnx")
    (folder / "parity.json").write_text('{"model.onnx": {"kept": true}}\n')
    before = checksums(folder)
    line = one_error_line(cli("parity", model, other, "--data", work["data"], "--n", 4))
    assert named in line and str(model) in line and str(other) in line
    if named == "sha256":  # both files, their hashes and sizes side by side
        assert f"(sha256 {hashlib.sha256(work['ckpt'].read_bytes()).hexdigest()[:12]}" in line
        assert f"(sha256 {hashlib.sha256(other.read_bytes()).hexdigest()[:12]}" in line
        assert f"{SIZE} px), not from" in line and "64 px)" in line
    assert checksums(folder) == before


def test_bench_refuses_a_reference_the_model_did_not_come_from(work, tmp_path):
    other = other_weights_at_64_px(work["ckpt"], tmp_path / "other.pt")
    line = one_error_line(
        cli("bench", work["model"], "--reference", other, "--backends", "ort", "--iters", 1, "--out", tmp_path / "out")
    )
    assert line.startswith(f"error: {work['model']} was exported from {work['ckpt'].resolve()} (sha256 ")
    assert f"not from {other} (sha256 " in line
    assert not (tmp_path / "out").exists()


def test_a_moved_training_folder_is_named_as_moved(work, tmp_path):
    import torch

    from export.onnx_export import export_onnx

    moved = tmp_path / "data-before-the-move"
    ckpt = torch.load(work["ckpt"], weights_only=True)
    ckpt["data_source"] = {**ckpt["data_source"], "data": str(moved)}
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "best.pt")
    model = export_onnx(tmp_path / "run" / "best.pt", tmp_path / "model.onnx")
    line = one_error_line(cli("parity", model, "--n", 2))
    assert line == (
        f"error: {tmp_path / 'run' / 'best.pt'}: its training data folder {moved} is gone "
        "(moved or deleted); pass --data DIR"
    )


# --- 3. exit codes tell the truth ---------------------------------------------------------------


def test_failed_parity_exits_3_and_no_fail_exits_0(work, tmp_path):
    model = perturbed_copy(work["model"], tmp_path / "broken.onnx")
    proc = cli("parity", model, "--n", 4)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "FAIL" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: parity below its targets: broken.onnx")
    assert cli("parity", model, "--n", 4, "--no-fail").returncode == 0


def test_export_names_each_file_whose_parity_failed():
    """export exits 3 through the same ``fail_unless`` as parity when ``failed_checks`` is not
    empty (a genuinely failing export cannot be made on demand here, so its list is checked)."""
    from export.exporter import ExportResult, failed_checks

    result = ExportResult(
        parity={
            "model.onnx": {"passed": True, "top1_agreement": 1.0, "map_correlation": 1.0},
            "model.int8.onnx": {"passed": False, "top1_agreement": 0.9125, "map_correlation": 0.93},
        }
    )
    assert failed_checks(result) == ["model.int8.onnx (top-1 91.2 %, map corr 0.9300)"]
    assert failed_checks(ExportResult()) == []


def test_a_bench_row_that_failed_validation_exits_3(work, tmp_path):
    model = perturbed_copy(work["model"], tmp_path / "broken.onnx")
    args = [
        "bench",
        model,
        "--backends",
        "ort",
        "--batch",
        1,
        "--iters",
        1,
        "--warmup",
        0,
        "--agreement-images",
        4,
        "--peak-n",
        64,
        "--out",
        tmp_path / "out",
    ]
    proc = cli(*args)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "row(s) failed: broken@32 ort b1: failed validation" in proc.stderr.strip().splitlines()[-1]
    (row,) = json.loads((tmp_path / "out" / "bench.json").read_text())["rows"]
    assert row["status"] == "failed validation" and row["validation_passed"] is False


# --- 4. options and output paths are checked before any work ------------------------------------


@pytest.mark.parametrize(
    "command, option, bad, choices",
    [
        ("train", "--arch", "resnet1000", "resnet18|resnet34|resnet50|resnet101|resnet152"),
        ("train", "--head", "foo", "wscnet|cam"),
        ("train", "--pool", "mean", "max|avg"),
        ("train", "--coupling", "partial", "both|local|none"),
        ("train", "--geometry", "fill", "squash|crop|letterbox"),
        ("webcam", "--resize", "stretch", "squash|crop|letterbox"),
        ("export", "--calib-method", "median", "entropy|max|percentile"),
        ("eval", "--split", "dev", "train|val|test|all"),
    ],
)
def test_choices_are_listed_in_help_and_others_refused(tmp_path, command, option, bad, choices):
    assert choices in cli(command, "--help").stdout
    required = {
        "train": ["--data", tmp_path, "--out", tmp_path / "run"],
        "webcam": ["--model", "m.onnx"],
        "export": [],
        "eval": ["x.pt", "--data", tmp_path],
    }[command]
    proc = cli(command, *required, option, bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"'{bad}' is not one of" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_bench_backends_are_checked_against_the_known_ones(tmp_path):
    proc = cli("bench", "--backends", "ort,ort-int4", "--out", tmp_path / "b")
    assert proc.returncode == 2 and "unknown back-end ort-int4" in proc.stderr
    assert not (tmp_path / "b").exists()


WRONG_KIND = {
    "train --out FILE": (lambda w, f, d: train_args(w["data"], f), "{f}: not a folder; --out takes a folder"),
    "export --out FILE": (lambda w, f, d: ["export", w["ckpt"], "--out", f], "{f}: not a folder; --out takes a folder"),
    "bench --out FILE": (lambda w, f, d: ["bench", "--out", f], "{f}: not a folder; --out takes a folder"),
    "ablation --out FILE": (
        lambda w, f, d: ["ablation", "--data", w["data"], "--out", f],
        "{f}: not a folder; --out takes a folder",
    ),
    "predict --out FILE": (
        lambda w, f, d: ["predict", w["ckpt"], w["image"], "--out", f],
        "{f}: not a folder; --out takes a folder",
    ),
    "eval --json DIR": (
        lambda w, f, d: ["eval", w["ckpt"], "--data", w["data"], "--json", d],
        "{d}: is a folder; --json takes a file path",
    ),
    "webcam --jsonl DIR": (
        lambda w, f, d: ["webcam", "--model", w["model"], "--source", w["video"], "--no-display", "--jsonl", d],
        "{d}: is a folder; --jsonl takes a file path",
    ),
    "webcam --save DIR": (
        lambda w, f, d: ["webcam", "--model", w["model"], "--source", w["video"], "--no-display", "--save", d],
        "{d}: is a folder; --save takes a file path",
    ),
    "webcam --save x.gif": (
        lambda w, f, d: [
            "webcam",
            "--model",
            w["model"],
            "--source",
            w["video"],
            "--no-display",
            "--save",
            d / "x.gif",
        ],
        "{d}/x.gif: cannot write .gif video here; --save takes one of ",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_KIND))
def test_output_of_the_wrong_kind_is_refused_before_any_work(work, tmp_path, case):
    make_args, message = WRONG_KIND[case]
    file, folder = tmp_path / "notes.md", tmp_path / "outputs"
    file.write_text("my notes\n")
    folder.mkdir()
    before = checksums(tmp_path)
    line = one_error_line(cli(*make_args(work, file, folder)))
    assert line.startswith("error: " + message.format(f=file, d=folder))
    assert checksums(tmp_path) == before  # nothing written: no .part file, no run folder
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.md", "outputs"]


def test_video_containers_offered_are_ones_the_writer_produced_here(work, tmp_path):
    from runtime.videoio import FOURCC, writable_video_suffixes

    line = one_error_line(
        cli("webcam", "--model", work["model"], "--source", work["video"], "--no-display", "--save", tmp_path / "x.gif")
    )
    offered = line.rsplit("takes one of ", 1)[1].split(", ")
    assert offered == list(writable_video_suffixes()) and set(offered) <= set(FOURCC)
    for suffix in offered:  # each one really plays back
        proc = cli(
            "webcam",
            "--model",
            work["model"],
            "--source",
            work["video"],
            "--no-display",
            "--save",
            tmp_path / f"out{suffix}",
            "--max-frames",
            2,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        import cv2

        assert cv2.VideoCapture(str(tmp_path / f"out{suffix}")).read()[0]


# --- 5. messages say what is wrong and what to do ------------------------------------------------


def test_an_exported_model_or_a_corrupt_file_given_to_predict_or_eval(work, tmp_path):
    image = work["image"]
    wants = (
        "this command takes a .pt checkpoint written by `train` (exported models run with "
        "`webcam` and are checked with `parity`)"
    )
    line = one_error_line(cli("predict", work["model"], image))
    assert line == f"error: {work['model']}: an exported model, not a training checkpoint; {wants}"
    line = one_error_line(cli("eval", work["model"], "--data", work["data"]))
    assert line == f"error: {work['model']}: an exported model, not a training checkpoint; {wants}"
    corrupt = tmp_path / "best.pt"
    corrupt.write_bytes(b"\x00" * 64)
    line = one_error_line(cli("predict", corrupt, image))
    assert line == f"error: {corrupt}: not a readable checkpoint (not a file torch.save wrote); {wants}"


@pytest.mark.parametrize("calib", [False, True])
def test_export_given_an_exported_model_says_so_first(work, tmp_path, calib):
    """Not "no training data recorded" (what INT8 calibration would find first): the input is wrong."""
    extra = ["--calib", work["data"]] if calib else []
    line = one_error_line(cli("export", work["model"], "--int8", *extra, "--out", tmp_path / "out"))
    assert line == (
        f"error: {work['model']}: an exported model, not a training checkpoint; this command takes "
        "a .pt checkpoint written by `train` (exported models run with `webcam` and are checked "
        "with `parity`)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [-64, 0, 48])
def test_train_img_size_must_be_a_positive_multiple_of_32(work, tmp_path, size):
    line = one_error_line(cli(*train_args(work["data"], tmp_path / "run"), "--img-size", size))
    assert line == f"error: --img-size must be a positive multiple of 32 (>= 32; the backbone's stride); got {size}"
    assert not (tmp_path / "run").exists()


def test_webcam_given_a_checkpoint_says_to_export_it(work):
    line = one_error_line(cli("webcam", "--model", work["ckpt"], "--source", work["video"], "--no-display"))
    assert line == (
        f"error: {work['ckpt']}: a PyTorch training checkpoint; the runtime runs exported "
        f"models: run `python cli.py export {work['ckpt']}` first and pass the .onnx it writes"
    )


def test_predict_expands_a_folder_and_refuses_an_empty_one(work, tmp_path):
    folder = work["data"] / "images" / "joy"
    proc = cli("predict", work["ckpt"], folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(line.split(":")[0] for line in proc.stdout.splitlines()) == sorted(str(p) for p in folder.iterdir())
    (tmp_path / "empty").mkdir()
    line = one_error_line(cli("predict", work["ckpt"], tmp_path / "empty"))
    assert line.startswith(f"error: {tmp_path / 'empty'}: a folder with no images in it (.jpg")


def test_a_file_that_is_not_an_image_is_reported_once(work, tmp_path):
    image = work["image"]
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    proc = cli("predict", work["ckpt"], image, notes)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count(str(notes)) == 1
    assert proc.stdout.splitlines()[0].startswith(f"{image}: ") and len(proc.stdout.splitlines()) == 1
    alone = cli("predict", work["ckpt"], notes)
    assert alone.returncode == 2 and alone.stderr.count(str(notes)) == 1
    assert alone.stderr.strip().splitlines()[-1] == "error: no readable image among the 1 input(s)"


# --- 6. the demo's figures come from its own summary.json ----------------------------------------


def test_demo_summary_holds_timings_figures_and_machine(tmp_path, capsys):
    from jobs.demo_summary import DemoClock, format_demo_summary, main, write_demo_summary

    (tmp_path / "export").mkdir()
    (tmp_path / "eval.json").write_text(
        json.dumps(
            {
                "accuracy": 0.75,
                "accuracy_detection_branch": 0.5,
                "detection": {"mae": 0.2, "precision": 0.3, "recall": 0.4, "f": 0.5, "ignored": 1},
            }
        )
    )
    (tmp_path / "export" / "parity.json").write_text(
        json.dumps({"model.onnx": {"top1_agreement": 1.0, "map_correlation": 0.999, "passed": True, "n_images": 3}})
    )
    (tmp_path / "frames.jsonl").write_text("".join(json.dumps({"inference_ms": v}) + "\n" for v in (2.0, 4.0, 9.0)))
    clock = DemoClock()
    with clock.step("train"):
        time.sleep(0.2)
    with clock.step("export"):
        time.sleep(0.1)
    summary = write_demo_summary(tmp_path, tmp_path / "export", clock)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert list(summary["timings_s"]["steps_wall"]) == ["train", "export"]
    assert summary["timings_s"]["steps_wall"]["train"] >= 0.2 and summary["timings_s"]["steps_wall"]["export"] >= 0.1
    assert summary["timings_s"]["total_wall"] >= 0.3
    assert summary["video_frames"] == 3 and summary["video_mean_inference_ms"] == pytest.approx(5.0)
    assert summary["detection"] == {"mae": 0.2, "precision": 0.3, "recall": 0.4, "f": 0.5}
    assert summary["machine"]["logical_cores"] == os.cpu_count()
    text = "\n".join(format_demo_summary(summary, tmp_path))
    assert "mean inference 5.0 ms/frame" in text and "model.onnx: top-1 agreement 100.0 %" in text
    assert "wall time 0 s (train 0 s, export 0 s)" in text
    main([str(tmp_path / "summary.json")])  # the README block, regenerated from the file alone
    assert capsys.readouterr().out == text + "\n"
