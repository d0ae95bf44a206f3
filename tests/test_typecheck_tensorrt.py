"""The TensorRT code type-checks against NVIDIA's published stubs, and a misspelled call fails it.

Runs .ci/typecheck (mypy + tensorrt-stubs in .typecheck/, see that script); skipped where mypy or
the stubs are absent (CI installs both). The misspellings are fed through mypy's --shadow-file,
so the files on disk stay as they are.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(os.environ.get("TENSORRT_STUBS", ROOT / ".typecheck" / "tensorrt-stubs"))

pytestmark = [
    pytest.mark.skipif(
        not (STUBS / "tensorrt" / "__init__.pyi").is_file(),
        reason="tensorrt-stubs not in .typecheck/ (.ci/typecheck installs them)",
    ),
]


def _typecheck(*extra: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    env = {**os.environ, "TENSORRT_STUBS": str(STUBS)}
    return subprocess.run(
        [str(ROOT / ".ci" / "typecheck"), *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_tensorrt_code_passes_against_the_stubs():
    result = _typecheck()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 3 source files" in result.stdout


def _shadow(tmp_path: Path, relative: str, old: str, new: str) -> list[str]:
    source = ROOT / relative
    text = source.read_text()
    assert old in text
    shadow = tmp_path / source.name
    shadow.write_text(text.replace(old, new, 1))
    return ["--shadow-file", relative, str(shadow)]  # the path as .ci/typecheck names it


def test_misspelled_tensorrt_calls_fail_it(tmp_path):
    args = _shadow(
        tmp_path, "export/tensorrt_build.py", "builder.build_serialized_network(", "builder.build_serialised_network("
    )
    args += _shadow(tmp_path, "runtime/backends/tensorrt_backend.py", "execute_async_v3(", "execute_async_v2(")
    result = _typecheck("--no-incremental", *args)  # the cache would trust the unchanged file on disk
    assert result.returncode == 1
    assert '"Builder" has no attribute "build_serialised_network"' in result.stdout
    # execute_async_v2 was removed in TensorRT 10: the stubs know it
    assert '"IExecutionContext" has no attribute "execute_async_v2"' in result.stdout
