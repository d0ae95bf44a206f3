"""The closed sets of export options, torch- and onnx-free so the CLI can offer them as choices."""

FORMATS = ("onnx", "engine")
CALIB_METHODS = ("entropy", "max", "percentile")
