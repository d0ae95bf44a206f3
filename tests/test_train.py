"""Training end to end on a tiny synthetic set: files written, exact resume, pretrained
weights, clear errors, and torchrun with two CPU processes (gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from wscnet.checkpoint import read_checkpoint
from wscnet.errors import UserError
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.synth import SynthConfig, write_synth_set
from wscnet.training import TrainOptions, train
from wscnet.training.loop import lr_factor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    # 8 per class: 6 train + 2 test each; 1 of the 6 is held out for validation.
    root = tmp_path_factory.mktemp("data") / "synth"
    write_synth_set(root, SynthConfig(n_per_class=8, size=72, seed=3), progress=False)
    return root


def tiny_options(data, out, **overrides) -> TrainOptions:
    settings = dict(
        data=str(data),
        out=str(out),
        arch="resnet18",
        img_size=64,
        batch_size=8,
        epochs=2,
        lr=0.01,
        head_lr=0.01,
        lr_schedule="step",
        lr_step=1,
        lr_gamma=0.5,
        workers=0,
        device="cpu",
        max_train_batches=2,
    )
    settings.update(overrides)
    return TrainOptions(**settings)


def test_training_writes_checkpoints_and_logs(synth_set, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_options(synth_set, out, k=2, pool="avg", grad_clip=1.0))
    assert {p.name for p in out.iterdir()} == {"best.pt", "last.pt", "history.json", "train_log.jsonl"}
    last = read_checkpoint(out / "last.pt")  # weights_only=True inside
    assert last["epoch"] == 2
    assert last["model_config"]["k"] == 2 and last["model_config"]["pool"] == "avg"
    assert last["class_names"] == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert last["input_size"] == 64
    state = last["train_state"]
    assert {"optimizer", "scheduler", "scaler", "epoch", "rng", "args"} <= set(state)
    assert state["args"]["arch"] == "resnet18"
    assert state["scheduler"]["last_epoch"] == 4  # 2 epochs × 2 batches, stepped per batch
    assert "train_state" not in read_checkpoint(out / "best.pt")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    for record in log:
        assert 0.0 <= record["val_accuracy"] <= 1.0
        assert 0.0 <= record["val_detection_f"] <= 1.0  # the synthetic set has GT maps
    assert log[1]["lr"] == pytest.approx(0.005)  # step schedule: ×0.5 after epoch 1
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"] == log and summary["best"] == history["best"]


def weights(path):
    return read_checkpoint(path)["state_dict"]


def test_resume_continues_exactly(synth_set, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_options(synth_set, straight))
    train(tiny_options(synth_set, split, epochs=1))  # the run "killed" after epoch 1
    train(tiny_options(synth_set, split, epochs=2, resume=True))
    a, b = weights(straight / "last.pt"), weights(split / "last.pt")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    sa = read_checkpoint(straight / "last.pt")["train_state"]
    sb = read_checkpoint(split / "last.pt")["train_state"]
    assert sb["epoch"] == sa["epoch"] == 2
    assert sb["scheduler"]["last_epoch"] == sa["scheduler"]["last_epoch"]
    for key, buf in sa["optimizer"]["state"].items():
        torch.testing.assert_close(
            sb["optimizer"]["state"][key]["momentum_buffer"], buf["momentum_buffer"], rtol=1e-5, atol=1e-6
        )
    log = (split / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_resumed_run_keeps_the_initialisation_it_started_with(synth_set, tmp_path):
    out = tmp_path / "run"
    train(tiny_options(synth_set, out, epochs=1, zero_init_residual=True))
    first = read_checkpoint(out / "last.pt")["state_dict"]["backbone.4.0.bn2.weight"]
    assert first.abs().max() < 0.05  # started at 0: one epoch of two small steps moves it little
    train(tiny_options(synth_set, out, epochs=2, zero_init_residual=False, resume=True))
    recorded = json.loads((out / "history.json").read_text())["options"]
    assert recorded["zero_init_residual"] is True


def test_resume_refuses_a_different_experiment(synth_set, tmp_path):
    out = tmp_path / "run"
    train(tiny_options(synth_set, out, epochs=1))
    with pytest.raises(UserError, match="different settings: arch"):
        train(tiny_options(synth_set, out, epochs=2, arch="mobilenet_v3_small", resume=True))
    with pytest.raises(UserError, match="nothing to resume"):
        train(tiny_options(synth_set, tmp_path / "empty", resume=True))


def test_pretrained_weights_are_loaded_from_disk(synth_set, tmp_path):
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=6), pretrained=path)
    torch.testing.assert_close(model.backbone[0].weight, reference.conv1.weight)
    torch.testing.assert_close(model.backbone[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    out = tmp_path / "run"
    train(tiny_options(synth_set, out, epochs=1, pretrained=str(path), max_train_batches=1))
    assert read_checkpoint(out / "last.pt")["train_state"]["args"]["pretrained"] == str(path)
    wrong = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), wrong)
    with pytest.raises(UserError, match="does not match torchvision resnet18"):
        train(tiny_options(synth_set, tmp_path / "bad", pretrained=str(wrong)))


def test_learning_rate_schedules():
    step = TrainOptions(lr_schedule="step", lr_step=7, lr_gamma=0.1, epochs=25)
    assert lr_factor(0, 10, step) == 1.0
    assert lr_factor(69, 10, step) == 1.0
    assert lr_factor(70, 10, step) == pytest.approx(0.1)
    assert lr_factor(140, 10, step) == pytest.approx(0.01)
    cosine = TrainOptions(lr_schedule="cosine", epochs=4, warmup_epochs=1)
    assert lr_factor(0, 10, cosine) == pytest.approx(0.1)  # warm-up: 1/10 of the rate
    assert lr_factor(20, 10, cosine) == pytest.approx(0.5)  # half way
    assert lr_factor(39, 10, cosine) < 0.01


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, **kwargs)


def test_cli_train_bad_input_is_one_line(tmp_path):
    result = run_cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: data directory not found"]
    (tmp_path / "empty").mkdir()
    result = run_cli("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--img-size", "100")
    assert result.returncode == 2 and "multiple of 32" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_train_runs(synth_set, tmp_path):
    out = tmp_path / "cli_run"
    result = run_cli(
        "train",
        "--data",
        str(synth_set),
        "--out",
        str(out),
        "--arch",
        "mobilenet_v3_small",
        "--img-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--head",
        "cam",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "note: Without --pretrained" in result.stderr
    assert "best epoch 1" in result.stdout
    ckpt = read_checkpoint(out / "best.pt")
    assert ckpt["model_config"]["head"] == "cam" and ckpt["model_config"]["arch"] == "mobilenet_v3_small"


@pytest.mark.slow
def test_torchrun_two_cpu_processes(synth_set, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "cli.py",
            "train",
            "--data",
            str(synth_set),
            "--out",
            str(out),
            "--arch",
            "resnet18",
            "--img-size",
            "64",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--lr",
            "0.01",
            "--head-lr",
            "0.01",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # rank 0 alone writes
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2
    # 30 training images over 2 ranks × 4 per rank, drop_last: 3 steps per epoch
    assert ckpt["train_state"]["scheduler"]["last_epoch"] == 6
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
