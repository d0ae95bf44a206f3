"""The prepared GPU acceptance run skips cleanly without CUDA (its GPU steps run on a lent machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the run would take minutes")
def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "cli.py", "job", "gpu-acceptance", "--out", str(tmp_path / "gpu")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gpu acceptance skipped: no CUDA GPU (torch.cuda.is_available() is False)"
    assert json.loads((tmp_path / "gpu" / "gpu_acceptance.json").read_text()) == {
        "skipped": "no CUDA GPU (torch.cuda.is_available() is False)"
    }
