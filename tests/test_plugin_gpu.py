"""The TensorRT plugin's Triton kernel on a real GPU against the PyTorch op (skipped without CUDA)."""

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


def test_plugin_engine_matches_onnx_runtime(tmp_path):
    """Build a TensorRT engine with the plugin from a tiny fused-op model and compare (needs TensorRT)."""
    pytest.importorskip("tensorrt")
    from export.onnx_export import export_onnx
    from export.parity import run_parity
    from export.tensorrt_build import build_engine
    from export.testing import make_trained_checkpoint, write_image_folder

    ckpt = make_trained_checkpoint(tmp_path / "ckpt.pt", size=64)
    images = write_image_folder(tmp_path / "images", 6, 2, 64, seed=3)
    onnx_path = export_onnx(ckpt, tmp_path / "model.onnx", dynamic_batch=True)
    engine = build_engine(onnx_path, tmp_path / "model.engine", min_batch=1, opt_batch=2, max_batch=4,
                          timing_cache=tmp_path / "timing.cache")
    assert (tmp_path / "model.engine.json").is_file() and (tmp_path / "timing.cache").is_file()
    report = run_parity(engine, ckpt, images, n=12, progress=False)
    assert report["top1_agreement"] == 1.0 and report["map_correlation"] > 0.999
