"""The closed sets of export options, torch- and onnx-free so the CLI can offer them as choices."""

FORMATS = ("onnx", "engine", "triton")  # triton: a Triton Inference Server model repository
CALIB_METHODS = ("entropy", "max", "percentile")
QUANTIZERS = ("ort", "modelopt")  # INT8: onnxruntime's ranges (both Q/DQ layouts), or also NVIDIA ModelOpt's
