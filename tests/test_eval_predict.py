"""eval, predict and ablation on real files: metrics checked against a direct computation."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from runtime.contract import InputContract
from wscnet.checkpoint import make_checkpoint, save_checkpoint
from wscnet.data import eval_transform, load_index, open_rgb, ten_crop_transform
from wscnet.errors import UserError
from wscnet.evaluate import evaluate_checkpoint, format_table
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.predict import overlay_map, predict_images
from wscnet.synth import CLASS_NAMES, SynthConfig, write_synth_set

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synth"
    write_synth_set(root, SynthConfig(n_per_class=5, size=72, seed=5), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=len(CLASS_NAMES), k=2))
    # Bias the classifier so predictions are not all one class (an untrained net often is).
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, make_checkpoint(model, class_names=list(CLASS_NAMES), input_size=SIZE))
    return path


def direct_predictions(ckpt_path, data, ten_crop=False):
    """Class decisions of both branches, computed image by image without evaluate.py."""
    from wscnet.checkpoint import load_checkpoint

    model, ckpt = load_checkpoint(ckpt_path)
    transform = (ten_crop_transform if ten_crop else eval_transform)(InputContract(SIZE, ckpt["mean"], ckpt["std"]))
    preds, det_preds, labels = [], [], []
    with torch.no_grad():
        for sample in load_index(data, split="test").samples:
            x = transform(open_rgb(sample.path))
            out = model(x if ten_crop else x[None])
            preds.append(int(torch.softmax(out.logits, 1).mean(0).argmax()))
            det_preds.append(int(torch.softmax(out.det_logits, 1).mean(0).argmax()))
            labels.append(sample.label)
    return np.array(preds), np.array(det_preds), np.array(labels)


@pytest.mark.parametrize("ten_crop", [False, True])
def test_eval_matches_direct_computation(synth_set, checkpoint, ten_crop):
    result = evaluate_checkpoint(checkpoint, synth_set, split="test", ten_crop=ten_crop, batch_size=4)
    preds, det_preds, labels = direct_predictions(checkpoint, synth_set, ten_crop)
    assert result["num_images"] == len(labels) == 6  # 1 test image per class
    assert result["accuracy"] == pytest.approx((preds == labels).mean())
    assert result["accuracy_detection_branch"] == pytest.approx((det_preds == labels).mean())
    confusion = np.array(result["confusion"])
    assert confusion.shape == (6, 6) and confusion.sum() == 6
    for p, t in zip(preds, labels):
        assert confusion[t, p] >= 1
    assert len(result["per_class"]) == 6
    d = result["detection"]
    assert set(d) == {"mae", "precision", "recall", "f"}
    assert 0 <= d["mae"] <= 1 and 0 <= d["f"] <= 1
    assert sum(result["error_modes"]["counts"].values()) == 6


def test_detection_metrics_use_min_max_maps_against_ground_truth(synth_set, checkpoint):
    from wscnet.checkpoint import load_checkpoint
    from wscnet.maps import normalised_maps
    from wscnet.metrics import detection_metrics

    result = evaluate_checkpoint(checkpoint, synth_set, split="test")
    model, ckpt = load_checkpoint(checkpoint)
    transform = eval_transform(InputContract(SIZE, ckpt["mean"], ckpt["std"]))
    samples = load_index(synth_set, split="test").samples
    with torch.no_grad():  # one batch, as evaluate runs it: Otsu flips pixels on 1e-6 differences
        out = model(torch.stack([transform(open_rgb(sample.path)) for sample in samples]))
    preds = list(normalised_maps(out.sentiment_map, (SIZE, SIZE)).numpy())
    truths = []
    for sample in samples:
        gt = np.asarray(Image.open(sample.gt_map).convert("L"), np.float32) / 255.0
        # 72 → 64 is under 2×: there the contract's anti-aliased shrink is plain bilinear
        truths.append(cv2.resize(gt, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
    expected = detection_metrics(preds, truths)
    for key in ("mae", "precision", "recall", "f"):
        assert result["detection"][key] == pytest.approx(expected[key], abs=1e-5)


def test_attention_metrics_on_fixation_maps(tmp_path, checkpoint):
    root = tmp_path / "emod"
    (root / "images").mkdir(parents=True)
    (root / "fixation_maps").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        fix = np.zeros((48, 48), np.uint8)
        fix[10 + i : 20 + i, 12:30] = 255
        Image.fromarray(fix).save(root / "fixation_maps" / f"im{i}.png")
    result = evaluate_checkpoint(checkpoint, root, split="all")
    assert set(result["attention"]) >= {"auc_judd", "auc_borji", "cc", "sim", "kl"}
    assert 0 <= result["attention"]["auc_judd"] <= 1
    assert "accuracy" not in result and result["num_images"] == 3
    assert "attention" in format_table(result)


def test_eval_rejects_a_set_with_other_classes(tmp_path, checkpoint):
    for name in ("cats", "dogs"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("RGB", (40, 40), (9, 9, 9)).save(tmp_path / "pets" / name / "a.png")
    with pytest.raises(UserError, match="differ from the checkpoint"):
        evaluate_checkpoint(checkpoint, tmp_path / "pets", split="all")


def run_cli(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_cli_eval_prints_table_and_writes_json(synth_set, checkpoint, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_cli("eval", checkpoint, "--data", synth_set, "--json", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "accuracy (classification branch)" in result.stdout and "detection  MAE" in result.stdout
    metrics = json.loads(out.read_text())
    assert {"accuracy", "accuracy_detection_branch", "per_class", "confusion", "detection", "error_modes"} <= set(
        metrics
    )
    bad = run_cli("eval", tmp_path / "nope.pt", "--data", synth_set)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'nope.pt'}: checkpoint not found"


def test_predict_writes_overlays_and_skips_corrupt_images(synth_set, checkpoint, tmp_path):
    good = sorted((synth_set / "images" / "joy").iterdir())[0]
    wide = tmp_path / "wide.png"
    Image.new("RGB", (90, 50), (200, 30, 30)).save(wide)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path / "maps"
    results = predict_images(checkpoint, [good, corrupt, wide], out_dir=out, device="cpu")
    assert [r["label"] is None for r in results] == [False, True, False]
    assert "unreadable" in results[1]["error"]
    for r, source in ((results[0], good), (results[2], wide)):
        assert r["label"] in CLASS_NAMES
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        overlay = cv2.imread(r["overlay"])
        original = cv2.imread(str(source))
        assert overlay.shape == original.shape  # the map covers the image at its own size
        assert not np.array_equal(overlay, original)
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}_map.png", "wide_map.png"]


def test_cli_predict_json_and_all_bad(synth_set, checkpoint, tmp_path):
    good = sorted((synth_set / "images" / "fear").iterdir())[0]
    result = run_cli("predict", checkpoint, good, tmp_path / "missing.png", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    assert payload[0]["label"] in CLASS_NAMES and payload[1]["error"] == "file not found"
    assert "missing.png: file not found; skipped" in result.stderr
    only_bad = run_cli("predict", checkpoint, tmp_path / "missing.png")
    assert only_bad.returncode == 2 and "Traceback" not in only_bad.stderr
    assert only_bad.stderr.strip().splitlines()[-1] == "error: no readable image among the 1 input(s)"


def test_overlay_blends_jet_colours():
    rgb = np.zeros((4, 4, 3), np.uint8)
    smap = np.zeros((4, 4), np.float32)
    smap[0, 0] = 1.0
    bgr = overlay_map(rgb, smap, opacity=1.0)
    assert tuple(bgr[0, 0]) == tuple(cv2.applyColorMap(np.uint8([[255]]), cv2.COLORMAP_JET)[0, 0])
    assert bgr[3, 3, 0] > bgr[3, 3, 2]  # low values are blue in jet


def test_ablation_writes_table_json_and_chart(synth_set, tmp_path):
    from wscnet.ablation import run_ablation

    out = tmp_path / "ablation"
    common = dict(
        arch="resnet18",
        epochs=1,
        batch_size=8,
        img_size=32,
        lr=0.01,
        head_lr=0.01,
        lr_schedule="step",
        warmup_epochs=0,
        workers=0,
        device="cpu",
        diagnostics_every=1,
    )
    table = run_ablation(data=[synth_set], out=out, only=["wscnet-k1", "cam"], seeds=[0, 1], **common)
    assert (out / "ablation.md").read_text().strip() == table.strip()
    for chart in ("ablation.png", "diagnostics.png", "against-cam.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    diagnostics = (out / "diagnostics.md").read_text()  # one epoch of each variant, over its two seeds
    assert f"| {synth_set.name} wscnet-k1 (scratch-flags) (2) | 1 |" in diagnostics
    assert f"| {synth_set.name} cam (scratch-flags) (2) | 1 |" in diagnostics
    report = json.loads((out / "ablation.json").read_text())
    rows, runs = report["rows"], report["runs"]
    assert [(r["recipe"], r["variant"], r["seeds"]) for r in rows] == [
        ("scratch-flags", "wscnet-k1", 2),
        ("scratch-flags", "cam", 2),
    ]
    for row in rows:  # mean and sample std of the two seeds' figures, from the per-run records
        mine = [r["accuracy"] for r in runs if r["variant"] == row["variant"]]
        assert row["accuracy"] == pytest.approx((mine[0] + mine[1]) / 2)
        assert row["accuracy_std"] == pytest.approx(abs(mine[0] - mine[1]) / 2**0.5)
        assert 0 <= row["f"] <= 1
    assert f"| {synth_set.name} | scratch-flags | wscnet-k1 | 2 |" in table and "up to 2 seeds" in table
    last = out / synth_set.name / "scratch-flags" / "cam" / "seed0" / "last.pt"
    mtime = last.stat().st_mtime
    # the head warm-up does not touch CAM: under "scratch" its finished runs are reused, not retrained
    again = run_ablation(
        data=synth_set, out=out, only=["cam"], seeds=[0, 1], recipes=["scratch"], resume=True, **common
    )
    assert last.stat().st_mtime == mtime and not (out / synth_set.name / "scratch").exists()
    cam_row = next(line for line in table.splitlines() if "| cam |" in line)
    assert cam_row.replace("| scratch-flags |", "| scratch |") in again.splitlines()
    # the paired table: WSCNet's seeds against CAM's, the mean difference from the per-run records
    (paired,) = report["against_cam"]
    by_seed = {(r["variant"], r["seed"]): r["accuracy"] for r in runs}
    deltas = [by_seed["wscnet-k1", s] - by_seed["cam", s] for s in (0, 1)]
    assert paired["seeds"] == 2 and paired["accuracy_delta"] == pytest.approx(sum(deltas) / 2)
    assert paired["early"] is None  # one epoch: no validation accuracy at epoch 10 to judge
    assert f"| {synth_set.name} | scratch-flags | wscnet-k1 | 2 | {paired['accuracy_delta']:+.3f}" in table
    partial = run_ablation(data=synth_set, out=out, only=["cam"], seeds=[0, 2], train_missing=False, **common)
    assert f"| {synth_set.name} | scratch-flags | cam | 1 |" in partial
    assert partial.endswith(f"left out: {synth_set.name}/scratch-flags/cam/seed2.")
    assert not (out / synth_set.name / "scratch-flags" / "cam" / "seed2").exists()
    # a finished run trained otherwise (an older trainer, other flags) is refused before any
    # training, not silently mixed into the table
    history = out / synth_set.name / "scratch-flags" / "cam" / "seed1" / "history.json"
    record = json.loads(history.read_text())
    record["options"]["augment"] = "paper"
    history.write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"cam/seed1: trained with other settings: augment 'paper' \(now 'aspect'\)"):
        run_ablation(data=synth_set, out=out, only=["wscnet-k1", "cam"], seeds=[0, 1], resume=True, **common)
    assert last.stat().st_mtime == mtime
    with pytest.raises(UserError, match="unknown ablation variant"):
        run_ablation(data=synth_set, out=out, only=["resnet-magic"])
    with pytest.raises(UserError, match="unknown recipe"):
        run_ablation(data=synth_set, out=out, only=["cam"], recipes=["magic"])


def test_predict_gives_what_the_runtime_gives_for_a_wide_picture(checkpoint, tmp_path):
    """`cli.py predict` (PyTorch) and the lean runtime on the exported model see a 16:9 picture the
    same way: every view of the contract, scores averaged (not the first view alone)."""
    from export.onnx_export import export_onnx
    from runtime.api import Model

    rng = np.random.default_rng(3)
    wide = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (54, 96, 3), dtype=np.uint8)).save(wide)
    ours = predict_images(checkpoint, [wide], device="cpu")[0]
    model = Model(export_onnx(checkpoint, tmp_path / "model.onnx"), device="cpu")
    assert len(model.metadata.contract.views) > 1  # the case where the first view alone differed
    theirs = model.predict(wide)
    assert list(ours["probabilities"].values()) == pytest.approx(theirs.probs.tolist(), abs=1e-4)
    assert list(ours["detection_probabilities"].values()) == pytest.approx(theirs.det_scores.tolist(), abs=1e-4)
