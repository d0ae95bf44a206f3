"""Jobs that will not fit in memory say so before they start: one ``error:`` line, exit 2, nothing
half-written. The memory a process may have is capped with ``WSCNET_MEMORY_MB`` (the documented
way to check a command against a smaller machine), so the tests need no small machine.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.onnx_export import export_onnx
from export.parity import run_parity
from export.testing import make_trained_checkpoint, write_image_folder
from wscnet import memory
from wscnet.errors import UserError
from wscnet.evaluate import check_eval_memory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    ckpt = make_trained_checkpoint(root / "ckpt.pt", size=64, steps=1)
    images = write_image_folder(root / "images", num_classes=6, per_class=2, size=64, seed=4)
    return {"root": root, "ckpt": ckpt, "images": images}


def _cli(*args: str, budget_mb: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), memory.BUDGET_ENV: str(budget_mb)}
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-1500:]
    return errors[0]


def test_int8_export_that_does_not_fit_stops_before_calibrating(small):
    out = small["root"] / "export"
    done = _cli(
        "export",
        str(small["ckpt"]),
        "--int8",
        "--calib",
        str(small["images"]),
        "--calib-n",
        "4",
        "--skip-parity",
        "--out",
        str(out),
        budget_mb=1,
    )
    line = _one_error_line(done)
    assert "INT8 calibration" in line and "GB" in line and "available" in line
    assert not (out / "model.int8.onnx").exists()
    assert not [p for p in out.iterdir() if p.name not in ("model.onnx",)]  # no partial files


def test_ten_crop_eval_that_does_not_fit_names_the_setting(small):
    done = _cli("eval", str(small["ckpt"]), "--data", str(small["images"]), "--split", "all", "--ten-crop", budget_mb=1)
    line = _one_error_line(done)
    assert "eval at 64 px, batch 32 (ten crops)" in line and "--batch-size 1" in line


def test_eval_suggests_the_largest_batch_that_fits(monkeypatch):
    config = {"arch": "resnet18", "num_classes": 6}
    per_image = memory.forward_bytes_per_image(config, 224)
    # room for three images' forward passes (and their inputs) but not for 32
    budget = memory.current_rss_bytes() + 3.5 * per_image
    monkeypatch.setenv(memory.BUDGET_ENV, str(budget / memory.MB))
    with pytest.raises(UserError, match=r"--batch-size 2 would fit"):
        check_eval_memory(config, 224, 32, 0, ten_crop=False)
    check_eval_memory(config, 224, 2, 0, ten_crop=False)  # fits: no error


def test_parity_that_does_not_fit_stops_before_comparing(small, monkeypatch):
    model = export_onnx(small["ckpt"], small["root"] / "parity.onnx", dynamic_batch=True)
    monkeypatch.setenv(memory.BUDGET_ENV, "1")
    with pytest.raises(UserError, match=r"parity at 64 px, batch 8 needs about .* GB"):
        run_parity(model, small["ckpt"], small["images"], n=4, progress=False)
    assert not (model.parent / "parity.json").exists()


def test_budget_caps_the_limit_and_rejects_nonsense(monkeypatch):
    monkeypatch.setenv(memory.BUDGET_ENV, "1")
    assert memory.memory_limit_bytes() == memory.MB
    assert not memory.fits(0)  # this process alone is above 1 MB
    monkeypatch.setenv(memory.BUDGET_ENV, "lots")
    with pytest.raises(UserError, match=memory.BUDGET_ENV):
        memory.memory_limit_bytes()


def test_bench_row_that_would_not_fit_is_skipped_with_the_figure(small, monkeypatch):
    from benchmarks.bench import worker_memory_shortfall
    from benchmarks.engines import SPECS

    config = {"arch": "resnet18", "num_classes": 6}
    monkeypatch.setenv(memory.BUDGET_ENV, str(memory.current_rss_bytes() / memory.MB + 100))
    reason = worker_memory_shortfall(SPECS["torch"], small["ckpt"], 8, 224, config)
    assert reason and reason.startswith("needs about") and "--batch" in reason  # 700 MB of torch alone
    monkeypatch.setenv(memory.BUDGET_ENV, str(memory.current_rss_bytes() / memory.MB + 5000))
    assert worker_memory_shortfall(SPECS["torch"], small["ckpt"], 1, 224, config) is None
