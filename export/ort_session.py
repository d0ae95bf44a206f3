"""ONNX Runtime sessions for the files this package writes (parity, benchmarks).

Plain CPU sessions with full graph optimisation: the INT8 files need no special session option
(``export.int8.dedicate_qdq_pairs`` shapes them so the default x86 passes fuse them).
"""

from pathlib import Path

from wscnet.errors import UserError

def session_options(threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def open_session(path: Path, threads: int = 0):
    """A CPU InferenceSession; one UserError line when ONNX Runtime refuses the file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # protobuf decode errors, ORT Fail / InvalidGraph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: ONNX Runtime cannot load this model: {first[:200]}") from None
