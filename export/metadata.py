"""Model metadata written into every exported file (ARCHITECTURE.md, "Exported ONNX model")."""

import json
from typing import Any

import onnx

import wscnet

PRECISIONS = ("fp32", "fp16", "int8")
METADATA_KEYS = (
    "class_names", "mean", "std", "input_size", "arch", "k", "head", "pool", "map_weight",
    "coupling", "precision", "fused_op", "wscnet_version",
)
# Where the file came from (export.provenance writes and checks them).
PROVENANCE_KEYS = ("checkpoint_sha256", "checkpoint_path", "checkpoint_epoch", "training_data")


def metadata_from_checkpoint(ckpt: dict[str, Any], *, img_size: int, fused_op: bool) -> dict[str, str]:
    config = ckpt["model_config"]
    return {
        "class_names": json.dumps(list(ckpt["class_names"])),
        "mean": json.dumps([float(m) for m in ckpt["mean"]]),
        "std": json.dumps([float(s) for s in ckpt["std"]]),
        "input_size": str(int(img_size)),
        "arch": str(config["arch"]),
        "k": str(int(config["k"])),
        "head": str(config["head"]),
        "pool": str(config["pool"]),
        "map_weight": str(config["map_weight"]),
        "coupling": str(config["coupling"]),
        "precision": "fp32",
        "fused_op": "1" if fused_op else "0",
        "wscnet_version": wscnet.__version__,
    }


def write_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props by ``metadata`` (string values)."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in model.metadata_props}


def set_precision(model: onnx.ModelProto, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    metadata = read_metadata(model)
    metadata["precision"] = precision
    write_metadata(model, metadata)


def decoded(metadata: dict[str, str]) -> dict[str, Any]:
    """Metadata with JSON lists and numbers decoded, for summaries and sidecar files."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            out[key] = json.loads(value) if key in ("class_names", "mean", "std", "input_size", "k") else value
        except json.JSONDecodeError:
            out[key] = value
    return out
