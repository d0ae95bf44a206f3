"""The lean install (``pip install ".[serve]"``: the runtime, no torch) runs ``doctor`` and ``bench
MODEL.onnx``: a fresh virtual environment, the project installed into it from this tree (not
editable), and the ``wscnet-edge`` command run there; the model is made here, where torch is."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the install takes about a minute (pip's cache keeps it off the network)

REPO = Path(__file__).resolve().parents[1]
SOURCES = (
    "pyproject.toml",
    "README.md",
    "constraints.txt",
    "cli.py",
    "cli_logging.py",
    "wscnet",
    "export",
    "runtime",
    "benchmarks",
    "studies",
    "jobs",
)
TORCH_LINE = "not installed (training and export need the [train] extra)"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the project's [serve] install, built from a copy of this tree's sources."""
    root = tmp_path_factory.mktemp("torch-free")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    result = subprocess.run(
        pip + ["-c", str(source / "constraints.txt"), f"{source}[serve]"],
        cwd=root,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "venv"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A briefly trained mobilenet_v3_small at 64 px, exported here (its metadata names the checkpoint)."""
    from export.onnx_export import export_onnx
    from export.testing import make_trained_checkpoint

    folder = tmp_path_factory.mktemp("tiny-model")
    ckpt = make_trained_checkpoint(folder / "tiny.pt", arch="mobilenet_v3_small", num_classes=4, size=64, steps=2)
    return export_onnx(ckpt, folder / "tiny.onnx")


def clean_env() -> dict:
    """This interpreter's environment without what would make the project's tree or torch visible."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")} | {
        "OMP_NUM_THREADS": "1"
    }


def wscnet_edge(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "wscnet-edge"), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_venv_has_no_torch(venv):
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch"], env=clean_env(), capture_output=True, text=True
    )
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_doctor_says_torch_is_missing_in_one_line_and_checks_the_runtime(venv, tmp_path):
    result = wscnet_edge(venv, "doctor", cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {
        line.split()[0] + (" " + line.split()[1] if line.startswith("smoke ") else ""): line
        for line in result.stdout.splitlines()
    }
    assert lines["torch"].split(None, 2)[1:] == ["info", TORCH_LINE]
    assert lines["smoke ort"].split()[2] == "ok"
    assert "torch is not installed" in lines["smoke torch"] and lines["smoke torch"].split()[2] == "skipped"


def test_doctor_requested_backend_missing_is_exit_3(venv, tmp_path):
    result = wscnet_edge(venv, "doctor", "--backends", "ort,openvino", cwd=tmp_path)  # no openvino in [serve]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == "error: requested back-end(s) not working here: ov"


def test_doctor_smoke_tests_a_given_model_on_onnx_runtime(venv, tiny_onnx, tmp_path):
    result = wscnet_edge(venv, "doctor", "--model", str(tiny_onnx), "--backends", "cpu", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    smoke = {item["name"]: item for item in json.loads(result.stdout)["items"]}["smoke ort"]
    assert smoke["status"] == "ok" and "probs max abs vs ONNX Runtime CPU 0.0e+00" in smoke["detail"]


def test_bench_measures_an_onnx_model_and_says_agreement_needs_torch(venv, tiny_onnx, tmp_path):
    out = tmp_path / "bench"
    result = wscnet_edge(
        venv,
        "bench",
        str(tiny_onnx),
        "--backends",
        "torch,ort",
        "--batch",
        "1",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--peak-n",
        "256",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    said = [line for line in result.stderr.splitlines() if "top-1 agreement against the checkpoint" in line]
    assert len(said) == 1 and "torch is not installed" in said[0]
    rows = {row["backend"]: row for row in json.loads((out / "bench.json").read_text())["rows"]}
    assert rows["ort"]["status"] == "ok" and rows["ort"]["iters"] == 3 and rows["ort"]["median_ms"] > 0
    assert rows["ort"]["top1_agreement"] is None
    assert rows["torch"]["status"] == "skipped" and "torch is not installed" in rows["torch"]["reason"]
    assert (out / "bench.md").is_file() and not (out / "bench.png").exists()  # no matplotlib in [serve]
