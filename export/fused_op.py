"""The fused ``wscnet::CrossSpatialPoolMap`` node: Eq. (1) + Eq. (3) as one ONNX node.

The exporter emits one opaque node (legacy TorchScript exporter, ``symbolic`` of an autograd
Function) and the model carries a local ONNX function of the same name and domain whose body is
standard ONNX ops, so ONNX Runtime and TensorRT's parser run it with no extra library. The
node's ``plugin_namespace`` attribute lets TensorRT pick the plugin of ``export.trt_plugin``
instead.

Node: input F' (N×kC×h×w float); outputs v (N×C) and M (N×h×w), same float type as F';
attributes ``k`` (int), ``pool`` ("max" | "avg"), ``map_weight`` ("softmax" | "raw").
"""

import torch
from onnx import AttributeProto, FunctionProto, NodeProto, TensorProto, helper
from torch import nn

from wscnet.pool_map import MAP_WEIGHTS, POOLS, cross_spatial_pool_map

DOMAIN = "wscnet"
OP_TYPE = "CrossSpatialPoolMap"
PLUGIN_NAMESPACE = "wscnet"
DOMAIN_VERSION = 1


class _PoolMapFunction(torch.autograd.Function):
    """Runs the PyTorch reference; ``symbolic`` is what the ONNX exporter writes instead."""

    @staticmethod
    def forward(ctx, fprime, k: int, pool: str, map_weight: str):
        return cross_spatial_pool_map(fprime, k, pool, map_weight)

    @staticmethod
    def symbolic(g, fprime, k: int, pool: str, map_weight: str):
        v, sentiment_map = g.op(
            f"{DOMAIN}::{OP_TYPE}",
            fprime,
            k_i=k,
            pool_s=pool,
            map_weight_s=map_weight,
            plugin_namespace_s=PLUGIN_NAMESPACE,
            outputs=2,
        )
        sizes = fprime.type().varyingSizes() if fprime.type().dim() == 4 else None
        if sizes is not None:
            n, kc, h, w = sizes
            c = kc // k if kc is not None else None
            v.setType(fprime.type().with_sizes([n, c]))
            sentiment_map.setType(fprime.type().with_sizes([n, h, w]))
        return v, sentiment_map


class ExportablePoolMap(nn.Module):
    """Drop-in for ``wscnet.pool_map.CrossSpatialPoolMap`` that exports as the fused node."""

    def __init__(self, k: int, pool: str, map_weight: str) -> None:
        super().__init__()
        self.k, self.pool, self.map_weight = k, pool, map_weight

    def forward(self, fprime: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _PoolMapFunction.apply(fprime, self.k, self.pool, self.map_weight)


def _const_ints(name: str, values: list[int]) -> NodeProto:
    tensor = helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
    return helper.make_node("Constant", [], [name], value=tensor)


def make_function(pool: str, map_weight: str, opset: int) -> FunctionProto:
    """The local function: Eq. (1) and (3) in standard ONNX ops (opset >= 18: axes as inputs).

    ``k`` is read from the node (``ref_attr_name``); ``pool`` and ``map_weight`` choose the
    body, which is why one model holds the body matching the node it carries.
    """
    if pool not in POOLS or map_weight not in MAP_WEIGHTS:
        raise ValueError(f"unsupported pool={pool!r} / map_weight={map_weight!r}")
    if opset < 18:
        raise ValueError("the CrossSpatialPoolMap function body needs opset 18 or newer")
    nodes = _class_score_nodes(pool) + _weight_nodes(map_weight) + _map_nodes()
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs=["F"],
        outputs=["v", "M"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=["k", "pool", "map_weight", "plugin_namespace"],
    )


def _class_score_nodes(pool: str) -> list[NodeProto]:
    """F (N×kC×h×w) grouped by class: v (N×C, each map pooled, then averaged over its k maps) and
    class_maps (N×C×h×w, the k maps' mean)."""
    k_scalar = helper.make_node("Constant", [], ["k_scalar"])
    k_scalar.attribute.append(helper.make_attribute_ref("value_int", AttributeProto.INT, ref_attr_name="k"))
    pooling = "ReduceMax" if pool == "max" else "ReduceMean"
    return [
        k_scalar,
        _const_ints("axis0", [0]),
        helper.make_node("Unsqueeze", ["k_scalar", "axis0"], ["k_1d"]),
        _const_ints("lead", [0, -1]),
        helper.make_node("Shape", ["F"], ["hw"], start=2),
        helper.make_node("Concat", ["lead", "k_1d", "hw"], ["grouped_shape"], axis=0),
        helper.make_node("Reshape", ["F", "grouped_shape"], ["G"]),  # N×C×k×h×w
        _const_ints("axes_hw", [3, 4]),
        helper.make_node(pooling, ["G", "axes_hw"], ["per_map"], keepdims=0),  # N×C×k
        _const_ints("axes_k", [2]),
        helper.make_node("ReduceMean", ["per_map", "axes_k"], ["v"], keepdims=0),  # N×C
        helper.make_node("ReduceMean", ["G", "axes_k"], ["class_maps"], keepdims=0),  # N×C×h×w
    ]


def _weight_nodes(map_weight: str) -> list[NodeProto]:
    """The class weights of the map: softmax(v), or the official code's v / C."""
    if map_weight == "softmax":
        return [helper.make_node("Softmax", ["v"], ["weights"], axis=1)]
    return [
        helper.make_node("Shape", ["v"], ["c_dim"], start=1, end=2),
        helper.make_node("CastLike", ["c_dim", "v"], ["c_float"]),
        helper.make_node("Div", ["v", "c_float"], ["weights"]),
    ]


def _map_nodes() -> list[NodeProto]:
    """M (N×h×w): the class maps summed with their weights."""
    return [
        _const_ints("axes_hw_w", [2, 3]),
        helper.make_node("Unsqueeze", ["weights", "axes_hw_w"], ["weights_4d"]),  # N×C×1×1
        helper.make_node("Mul", ["weights_4d", "class_maps"], ["weighted"]),
        _const_ints("axis1", [1]),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["M"], keepdims=0),  # N×h×w
    ]


def reference(fprime: torch.Tensor, k: int, pool: str, map_weight: str):
    """The PyTorch reference of the node (for kernel and plugin tests)."""
    return cross_spatial_pool_map(fprime, k, pool, map_weight)
