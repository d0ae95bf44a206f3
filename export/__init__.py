"""Export: checkpoint -> ONNX (fused CrossSpatialPoolMap op), FP16/INT8 variants, TensorRT engines, parity."""
