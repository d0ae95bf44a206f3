"""``wscnet::CrossSpatialPoolMap`` as a TensorRT plugin (``tensorrt.plugin``, TensorRT >= 10.6).

The ONNX parser maps the fused node to this plugin because the node carries
``plugin_namespace="wscnet"`` and its op_type is the plugin name (from 10.10 the node's domain,
also ``wscnet``, names the namespace too). Two implementations of the one Triton kernel of
``export.triton_kernel``:

- AOT (TensorRT >= 10.9, ``aot_impl``; the node also carries ``aot=1``): the kernel is compiled to
  PTX while the engine is built and TensorRT bakes it into the plan. The engine then needs no
  Python, torch or this package: ``webcam``, trtexec and DeepStream load it as it is.
- JIT (``impl``, 10.6+): the kernel is launched from Python through torch at run time, so the
  process that deserializes the engine must call ``register_plugin()`` (the sidecar lists it).

The shape/type logic, the kernel signature and the PTX compilation are plain functions, tested
without TensorRT or a GPU (Triton compiles PTX for a given compute capability on the CPU).
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from wscnet.errors import UserError
from wscnet.pool_map import MAP_WEIGHTS, POOLS

from .fused_op import OP_TYPE, PLUGIN_NAMESPACE

PLUGIN_NAME = f"{PLUGIN_NAMESPACE}::{OP_TYPE}"
JIT_MIN_VERSION = (10, 6)  # tensorrt.plugin
AOT_MIN_VERSION = (10, 9)  # tensorrt.plugin.aot_impl
TRITON_DTYPES = {"float32": "fp32", "float16": "fp16"}
_registered = False
_aot_compiled: list = []  # kernels aot_impl handed to TensorRT in this process (for the sidecar)
_aot_capability: tuple[int, int] | None = None  # the building GPU's (major, minor); None = Triton's active GPU


def check_attributes(k: int, pool: str, map_weight: str, channels=None) -> None:
    """Raise ValueError for attributes the kernel does not implement."""
    if int(k) < 1:
        raise ValueError(f"{PLUGIN_NAME}: k must be >= 1, got {k}")
    if pool not in POOLS:
        raise ValueError(f"{PLUGIN_NAME}: pool must be one of {POOLS}, got {pool!r}")
    if map_weight not in MAP_WEIGHTS:
        raise ValueError(f"{PLUGIN_NAME}: map_weight must be one of {MAP_WEIGHTS}, got {map_weight!r}")
    if isinstance(channels, int) and channels % int(k):
        raise ValueError(f"{PLUGIN_NAME}: F' has {channels} channels, not a multiple of k={k}")


def output_dims(dims, k: int):
    """F' dims (N, kC, h, w) -> (v dims (N, C), M dims (N, h, w)).

    Works on ints and on TensorRT's symbolic shape expressions alike (only ``//`` is used).
    """
    if len(dims) != 4:
        raise ValueError(f"{PLUGIN_NAME}: F' must be 4-D (N×kC×h×w), got {len(dims)} dims")
    n, kc, h, w = dims[0], dims[1], dims[2], dims[3]
    return (n, kc // int(k)), (n, h, w)


def output_dtypes(input_dtype):
    """v and M have F's type (the kernel accumulates in float32 whatever it is)."""
    return input_dtype, input_dtype


def plugin_mode(version: tuple[int, ...]) -> tuple[str, str]:
    """("aot" | "inline", why) for ``--trt-plugin`` on a TensorRT release (major, minor, ...).

    "inline": the parser builds the node's ONNX function body (standard layers) instead.
    """
    shown = ".".join(map(str, version))
    if tuple(version[:2]) >= AOT_MIN_VERSION:
        return "aot", f"TensorRT {shown}: the fused node is an AOT plugin (PTX baked into the engine)"
    if tuple(version[:2]) >= JIT_MIN_VERSION:
        return "inline", (
            f"TensorRT {shown} has Python plugins but not aot_impl (10.9+): a plugin here would need "
            "Python and torch at run time, so the fused node is built from its ONNX function body"
        )
    return (
        "inline",
        f"TensorRT {shown} has no tensorrt.plugin (10.6+): the fused node is built from its ONNX function body",
    )


def kernel_signature(dtype: str) -> dict[str, str]:
    """Triton signature of ``pool_map_kernel``'s runtime arguments, in AOT launch order."""
    if dtype not in TRITON_DTYPES:
        raise ValueError(f"{PLUGIN_NAME}: the kernel takes {' or '.join(TRITON_DTYPES)}, not {dtype}")
    pointer = f"*{TRITON_DTYPES[dtype]}"
    return {"f_ptr": pointer, "C": "i32", "HW": "i32", "v_ptr": pointer, "m_ptr": pointer}


@dataclass(frozen=True)
class CompiledKernel:
    name: str
    ptx: str
    threads: int  # block_x = num_warps × 32
    shared_bytes: int
    channels: int  # C, the first int32 scalar
    hw: int  # h × w, the second


@lru_cache(maxsize=32)
def compile_ptx(
    fprime_dims: tuple[int, int, int],
    k: int,
    pool: str,
    map_weight: str,
    dtype: str = "float32",
    capability: tuple[int, int] | None = None,
) -> CompiledKernel:
    """PTX of the kernel for F' of (kC, h, w) per image; ``capability`` None = the visible GPU's.

    Triton compiles for a named target without a GPU. Triton kernels take hidden scratch
    pointers after their own arguments, which an AOT launch never passes, so a kernel that would
    use them is refused.
    """
    import triton
    from triton.backends.compiler import GPUTarget

    from .triton_kernel import launch_config, pool_map_kernel

    kc, h, w = fprime_dims
    check_attributes(k, pool, map_weight, channels=kc)
    cfg = launch_config(1, kc, h, w, k)
    source = triton.compiler.ASTSource(
        fn=pool_map_kernel,
        signature=kernel_signature(dtype),
        constexprs={
            "K": int(k),
            "BLOCK_K": cfg["BLOCK_K"],
            "BLOCK_HW": cfg["BLOCK_HW"],
            "BLOCK_C": cfg["BLOCK_C"],
            "POOL_MAX": pool == "max",
            "SOFTMAX": map_weight == "softmax",
        },
    )
    target = None if capability is None else GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    compiled = triton.compile(source, target=target)
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise UserError(f"{PLUGIN_NAME}: this Triton build gives the kernel scratch memory an AOT plugin cannot pass")
    return CompiledKernel(meta.name, compiled.asm["ptx"], meta.num_warps * 32, meta.shared, cfg["C"], cfg["HW"])


def ptx_header(ptx: str) -> dict[str, str]:
    """PTX ISA version and target (``.version 8.7``, ``.target sm_87``): what a driver must accept."""
    version = re.search(r"^\.version\s+(\S+)", ptx, re.MULTILINE)
    target = re.search(r"^\.target\s+([\w]+)", ptx, re.MULTILINE)
    return {"ptx_isa": version.group(1) if version else "?", "target": target.group(1) if target else "?"}


def aot_kernels_compiled() -> list[CompiledKernel]:
    return list(_aot_compiled)


def register_plugin(plugin_api=None, capability: tuple[int, int] | None = None) -> None:
    """Register the plugin with TensorRT (idempotent). ``plugin_api`` = ``tensorrt.plugin`` (injectable);
    ``capability``: the GPU the AOT kernel is compiled for (default: the one Triton sees)."""
    global _registered, _aot_capability
    _aot_capability = capability
    if _registered:
        return
    trtp = plugin_api if plugin_api is not None else _import_plugin_api()
    if not hasattr(trtp, "aot_impl"):
        raise UserError("this TensorRT has no tensorrt.plugin.aot_impl (TensorRT >= 10.9 needed for the AOT plugin)")
    _define(trtp)
    _define_aot(trtp)
    _registered = True


def _import_plugin_api():
    try:
        import tensorrt.plugin as trtp
    except ImportError:
        raise UserError("TensorRT's Python plugin API (tensorrt.plugin, TensorRT >= 10.6) is not installed") from None
    return trtp


def _static_dims(desc) -> tuple[int, int, int]:
    """(kC, h, w) of F' from an aot_impl TensorDesc; only the batch may be dynamic."""
    dims = tuple(int(d) for d in desc.shape)
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise ValueError(f"{PLUGIN_NAME}: AOT needs F' as N×kC×h×w with fixed kC, h, w; got {dims}")
    return dims[1], dims[2], dims[3]


def _dtype_name(trt_dtype) -> str:
    name = str(trt_dtype).rsplit(".", 1)[-1].lower()
    return {"float": "float32", "half": "float16"}.get(name, name)


def _define_aot(trtp) -> None:
    from typing import Tuple, Union

    @trtp.aot_impl(PLUGIN_NAME)
    def _aot(
        fprime: trtp.TensorDesc,
        k: int,
        pool: str,
        map_weight: str,
        outputs: Tuple[trtp.TensorDesc],
        tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        kernel = compile_ptx(_static_dims(fprime), int(k), pool, map_weight, _dtype_name(fprime.dtype), _aot_capability)
        if kernel not in _aot_compiled:
            _aot_compiled.append(kernel)
        launch = trtp.KernelLaunchParams()
        launch.grid_x = fprime.shape_expr[0]  # one program per image
        launch.block_x = kernel.threads
        launch.shared_mem = kernel.shared_bytes
        scalars = trtp.SymIntExprs.from_tuple([trtp.SymInt32(kernel.channels), trtp.SymInt32(kernel.hw)])
        return kernel.name, kernel.ptx, launch, scalars


def _define(trtp) -> None:
    from typing import Tuple

    @trtp.register(PLUGIN_NAME)
    def _describe(
        fprime: trtp.TensorDesc, k: int, pool: str, map_weight: str
    ) -> Tuple[trtp.TensorDesc, trtp.TensorDesc]:
        check_attributes(k, pool, map_weight)
        v_dims, m_dims = output_dims(fprime.shape_expr, k)
        v_type, m_type = output_dtypes(fprime.dtype)
        v = trtp.from_shape_expr(trtp.ShapeExprs.from_tuple(v_dims), dtype=v_type)
        m = trtp.from_shape_expr(trtp.ShapeExprs.from_tuple(m_dims), dtype=m_type)
        return v, m
