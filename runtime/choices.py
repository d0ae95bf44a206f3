"""Closed sets of names the runtime accepts, and the plain checks on them (standard library only).

Every layer may import this module: the back-ends, the validation of command-line paths and the
commands all read their choices from here, so ``--help`` and the code never disagree.
"""

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino", "openvino:CPU", "openvino:GPU")
ENGINE_SUFFIXES = (".engine", ".plan")
TRITON_SCHEMES = {"triton": "grpc", "triton+grpc": "grpc", "triton+http": "http"}


def is_openvino_device(device: str) -> bool:
    return device == "openvino" or device.startswith("openvino:")


def is_triton_url(model) -> bool:
    """``triton://HOST:PORT/MODEL`` (or ``triton+http://``, ``triton+grpc://``): a model on a server."""
    return isinstance(model, str) and "://" in model and model.split("://", 1)[0] in TRITON_SCHEMES
