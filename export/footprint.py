"""Memory figures of an ONNX model from its weights and shape-inferred tensors (for pre-flight checks)."""

import onnx


class ModelFootprint:
    """Weights, largest tensor and per-op tensor bytes of one forward pass of ``model`` (float32)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        inferred = onnx.shape_inference.infer_shapes(model)
        self._initializers = {init.name for init in model.graph.initializer}
        self.weights = sum(_count(init.dims) * 4 for init in model.graph.initializer)
        self._sizes = {v.name: _value_bytes(v) for v in (*inferred.graph.value_info, *inferred.graph.output)}
        self._nodes = list(inferred.graph.node)
        self.largest = max(self._sizes.values(), default=0)

    def tensor_bytes(self, op_types: list[str]) -> int:
        """Bytes of the distinct non-constant tensors that nodes of ``op_types`` read or write."""
        names = {
            name
            for node in self._nodes
            if node.op_type in op_types
            for name in (*node.input, *node.output)
            if name and name not in self._initializers
        }
        return sum(self._sizes.get(name, 0) for name in names)


def _count(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _value_bytes(value) -> int:
    dims = value.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return 0
    return _count(d.dim_value for d in dims) * 4
