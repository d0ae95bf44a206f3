"""ONNX Runtime sessions for the files this package writes (parity, benchmarks).

INT8 Q/DQ models are symmetric int8 (TensorRT's form). On x86 ONNX Runtime fuses int8×int8
Q/DQ groups into QLinearConv only when ``session.qdqisint8allowed`` is set; without it most
convolutions stay as DequantizeLinear → float Conv and INT8 is slower than FP32.
"""

from pathlib import Path

import onnx

from wscnet.errors import UserError

INT8_CONFIG = {"session.qdqisint8allowed": "1"}


def session_options(threads: int = 0, *, int8: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if int8:
        for key, value in INT8_CONFIG.items():
            options.add_session_config_entry(key, value)
    return options


def open_session(path: Path, threads: int = 0):
    """A CPU InferenceSession; one UserError line when ONNX Runtime refuses the file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        precision = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get("precision")
        options = session_options(threads, int8=precision == "int8")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # protobuf decode errors, ORT Fail / InvalidGraph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: ONNX Runtime cannot load this model: {first[:200]}") from None
