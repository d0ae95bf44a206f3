"""``wscnet::CrossSpatialPoolMap`` as a TensorRT plugin (``tensorrt.plugin``, TensorRT >= 10.6).

The ONNX parser maps the fused node to this plugin because the node carries
``plugin_namespace="wscnet"`` and its op_type is the plugin name. The shape/type logic is plain
functions (``output_dims``, ``check_attributes``) so it is tested without TensorRT or a GPU; the
implementation launches the Triton kernel of ``export.triton_kernel`` on TensorRT's stream.

A process that builds or deserializes an engine holding this plugin must call
``register_plugin()`` first (the builder does; see the sidecar's ``plugins`` list).
"""

from wscnet.errors import UserError
from wscnet.pool_map import MAP_WEIGHTS, POOLS

from .fused_op import OP_TYPE, PLUGIN_NAMESPACE

PLUGIN_NAME = f"{PLUGIN_NAMESPACE}::{OP_TYPE}"
_registered = False


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


def register_plugin(trtp=None) -> None:
    """Register the plugin with TensorRT (idempotent). ``trtp`` = ``tensorrt.plugin`` (injectable)."""
    global _registered
    if _registered:
        return
    if trtp is None:
        try:
            import tensorrt.plugin as trtp
        except ImportError:
            raise UserError(
                "TensorRT's Python plugin API (tensorrt.plugin, TensorRT >= 10.6) is not installed"
            ) from None
    _define(trtp)
    _registered = True


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

    @trtp.impl(PLUGIN_NAME)
    def _enqueue(
        fprime: trtp.Tensor, k: int, pool: str, map_weight: str,
        outputs: Tuple[trtp.Tensor], stream: int,
    ) -> None:
        import torch

        from .triton_kernel import cross_spatial_pool_map_triton

        f = torch.as_tensor(fprime, device="cuda")
        v = torch.as_tensor(outputs[0], device="cuda")
        m = torch.as_tensor(outputs[1], device="cuda")
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            cross_spatial_pool_map_triton(f, int(k), pool, map_weight, v=v, m=m)
