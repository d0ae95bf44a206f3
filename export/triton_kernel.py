"""The CUDA kernel of the TensorRT plugin, in Triton: Eq. (1) + Eq. (3) for one image per program.

Program ``n`` reads F'[n] (kC×h×w, contiguous) twice: the first pass pools each map and averages
the k maps of a class into v[n, c]; the second weights each class map (mean of its k maps) by
softmax(v) (or v / C) and sums them into M[n]. Everything accumulates in float32 whatever the
storage type. ``TRITON_INTERPRET=1`` runs the same kernel on the CPU (tests use it).

Argument order is TensorRT's AOT plugin convention (``tensorrt.plugin.aot_impl``): input tensor,
then the int32 scalars, then the output tensors; ``export.trt_plugin`` compiles this same kernel to
PTX for engines that need no Python.
"""

import triton
import triton.language as tl


@triton.jit
def pool_map_kernel(
    f_ptr,
    C,
    HW,
    v_ptr,
    m_ptr,
    K: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_HW: tl.constexpr,
    BLOCK_C: tl.constexpr,
    POOL_MAX: tl.constexpr,
    SOFTMAX: tl.constexpr,
):
    n = tl.program_id(0)
    offs_k = tl.arange(0, BLOCK_K)
    offs_hw = tl.arange(0, BLOCK_HW)
    offs_c = tl.arange(0, BLOCK_C)
    valid = (offs_k[:, None] < K) & (offs_hw[None, :] < HW)
    image = f_ptr + n * C * K * HW

    v_all = tl.zeros([BLOCK_C], dtype=tl.float32)
    for c in range(0, C):
        ptrs = image + (c * K + offs_k[:, None]) * HW + offs_hw[None, :]
        if POOL_MAX:
            x = tl.load(ptrs, mask=valid, other=float("-inf")).to(tl.float32)
            per_map = tl.max(x, axis=1)  # BLOCK_K
        else:
            x = tl.load(ptrs, mask=valid, other=0.0).to(tl.float32)
            per_map = tl.sum(x, axis=1) / HW
        per_map = tl.where(offs_k < K, per_map, 0.0)
        v_c = tl.sum(per_map, axis=0) / K
        v_all = tl.where(offs_c == c, v_c, v_all)
    tl.store(v_ptr + n * C + offs_c, v_all.to(v_ptr.dtype.element_ty), mask=offs_c < C)

    if SOFTMAX:
        logits = tl.where(offs_c < C, v_all, float("-inf"))
        e = tl.exp(logits - tl.max(logits, axis=0))
        e = tl.where(offs_c < C, e, 0.0)
        weights = e / tl.sum(e, axis=0)
    else:
        weights = v_all / C

    m = tl.zeros([BLOCK_HW], dtype=tl.float32)
    for c in range(0, C):
        ptrs = image + (c * K + offs_k[:, None]) * HW + offs_hw[None, :]
        x = tl.load(ptrs, mask=valid, other=0.0).to(tl.float32)
        class_map = tl.sum(x, axis=0) / K  # BLOCK_HW
        w_c = tl.sum(tl.where(offs_c == c, weights, 0.0), axis=0)
        m += w_c * class_map
    tl.store(m_ptr + n * HW + offs_hw, m.to(m_ptr.dtype.element_ty), mask=offs_hw < HW)


def launch_config(n: int, kc: int, h: int, w: int, k: int) -> dict:
    """Grid and compile-time sizes for one launch (pure: testable without a GPU)."""
    if kc % k:
        raise ValueError(f"F' has {kc} channels, not a multiple of k={k}")
    c = kc // k
    return {
        "grid": (n,),
        "C": c,
        "HW": h * w,
        "BLOCK_K": triton.next_power_of_2(k),
        "BLOCK_HW": triton.next_power_of_2(h * w),
        "BLOCK_C": triton.next_power_of_2(c),
    }


def cross_spatial_pool_map_triton(fprime, k: int, pool: str = "max", map_weight: str = "softmax", v=None, m=None):
    """Run the kernel on a contiguous N×kC×h×w torch tensor; returns (v N×C, M N×h×w)."""
    import torch

    n, kc, h, w = fprime.shape
    cfg = launch_config(n, kc, h, w, k)
    fprime = fprime.contiguous()
    v = torch.empty(n, cfg["C"], dtype=fprime.dtype, device=fprime.device) if v is None else v
    m = torch.empty(n, h, w, dtype=fprime.dtype, device=fprime.device) if m is None else m
    pool_map_kernel[cfg["grid"]](
        fprime,
        cfg["C"],
        cfg["HW"],
        v,
        m,
        K=k,
        BLOCK_K=cfg["BLOCK_K"],
        BLOCK_HW=cfg["BLOCK_HW"],
        BLOCK_C=cfg["BLOCK_C"],
        POOL_MAX=pool == "max",
        SOFTMAX=map_weight == "softmax",
    )
    return v, m
