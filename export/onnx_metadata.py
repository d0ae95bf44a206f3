"""Model metadata written into every exported file (ARCHITECTURE.md, "Exported ONNX model")."""

import json
from dataclasses import replace
from typing import Any

import onnx

import wscnet
from runtime.contract import InputContract
from runtime.metadata import CONTRACT_KEY, ModelMetadata
from wscnet.checkpoint import checkpoint_contract

PRECISIONS = ("fp32", "fp16", "int8")
METADATA_KEYS = (
    "class_names",
    "mean",
    "std",
    "input_size",
    "arch",
    "k",
    "head",
    "pool",
    "map_weight",
    "coupling",
    "precision",
    "fused_op",
    "wscnet_version",
    CONTRACT_KEY,
)
# the values decoded() reads as JSON (lists, numbers, the contract); the rest stay strings
JSON_KEYS = ("class_names", "mean", "std", "input_size", "k", CONTRACT_KEY)
# Where the file came from (export.provenance writes and checks them).
PROVENANCE_KEYS = ("checkpoint_sha256", "checkpoint_path", "checkpoint_epoch", "training_data")


def export_contract(ckpt: dict[str, Any], img_size: int | None = None) -> InputContract:
    """The checkpoint's input contract, at ``img_size`` when export overrides the side."""
    if img_size and "input_contract" not in ckpt:  # an older checkpoint: the documented fallback
        return InputContract.fallback(int(img_size), ckpt["mean"], ckpt["std"])
    contract = checkpoint_contract(ckpt)
    return replace(contract, input_size=int(img_size)) if img_size else contract


def metadata_from_checkpoint(ckpt: dict[str, Any], *, img_size: int, fused_op: bool) -> dict[str, str]:
    config = ckpt["model_config"]
    contract = export_contract(ckpt, img_size)
    return {
        "class_names": json.dumps(list(ckpt["class_names"])),
        "mean": json.dumps(list(contract.mean)),
        "std": json.dumps(list(contract.std)),
        "input_size": str(contract.input_size),
        CONTRACT_KEY: contract.to_json(),
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


def load_onnx(path) -> onnx.ModelProto:
    """An ONNX model from disk; an unreadable file is one UserError line naming it."""
    from wscnet.errors import UserError

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors, missing file
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


def write_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata_props by ``metadata`` (string values)."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in model.metadata_props}


def model_contract(model: onnx.ModelProto, source: str = "<model>") -> InputContract:
    """The input contract an exported model carries (the documented fallback for older files)."""
    return ModelMetadata.from_props(read_metadata(model), source).contract


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
            out[key] = json.loads(value) if key in JSON_KEYS else value
        except json.JSONDecodeError:
            out[key] = value
    return out
