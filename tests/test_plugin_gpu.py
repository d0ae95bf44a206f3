"""On a real GPU (skipped without CUDA): the Triton kernel against PyTorch, and an AOT-plugin engine
(TensorRT >= 10.9, skipped without it) run by the lean runtime with no Python plugin registered."""

import pytest
import torch

from wscnet.pool_map import cross_spatial_pool_map

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("map_weight", ["softmax", "raw"])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("shape, k", [((1, 32, 14, 14), 4), ((3, 24, 7, 9), 3), ((2, 16, 32, 32), 16)])
def test_kernel_matches_pytorch(pool, map_weight, dtype, tol, shape, k):
    from export.triton_kernel import cross_spatial_pool_map_triton

    torch.manual_seed(0)
    fprime = (torch.randn(*shape, device="cuda") * 3).to(dtype)
    v, m = cross_spatial_pool_map_triton(fprime, k, pool, map_weight)
    torch.cuda.synchronize()
    rv, rm = cross_spatial_pool_map(fprime.float(), k, pool, map_weight)
    assert v.dtype == m.dtype == dtype
    torch.testing.assert_close(v.float(), rv, atol=tol, rtol=tol)
    torch.testing.assert_close(m.float(), rm, atol=tol * 10, rtol=tol * 10)


def test_aot_plugin_engine_runs_without_python_plugins(tmp_path):
    """Build with --trt-plugin (AOT, TensorRT >= 10.9), then load the engine in a fresh process that
    imports only the runtime (no torch, no export, no plugin registration) and compare with ONNX Runtime."""
    trt = pytest.importorskip("tensorrt")
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    import onnxruntime as ort

    from export.onnx_export import export_onnx
    from export.tensorrt_build import build_engine, version_tuple
    from export.testing import make_trained_checkpoint

    if version_tuple(trt.__version__)[:2] < (10, 9):
        pytest.skip(f"TensorRT {trt.__version__} has no aot_impl")
    ckpt = make_trained_checkpoint(tmp_path / "ckpt.pt", size=64)
    onnx_path = export_onnx(ckpt, tmp_path / "model.onnx", dynamic_batch=True)
    engine = build_engine(
        onnx_path,
        tmp_path / "model.engine",
        min_batch=1,
        opt_batch=2,
        max_batch=4,
        timing_cache=tmp_path / "timing.cache",
        use_plugin=True,
    )
    sidecar = json.loads((tmp_path / "model.engine.json").read_text())
    assert sidecar["fused_node"] == "aot-plugin" and sidecar["plugins"] == [] and sidecar["aot_kernels"]
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np\n"
        "from runtime.backends import open_backend\n"
        f"b = open_backend({str(engine)!r})\n"
        f"out = b.infer(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, **out)\n"
        "assert not {'torch', 'export', 'wscnet', 'triton'} & set(m.split('.')[0] for m in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = dict(zip(["probs", "det_scores", "sentiment_map"], session.run(None, {"image": x})))
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-3)
