"""Where an exported model came from, and the check that a checkpoint is that one.

Every exported file records the checkpoint's content hash (sha256), its path and epoch, and the
folder it was trained on (metadata keys ``PROVENANCE_KEYS``; the data set itself, with its split
settings, stays in the checkpoint's ``data_source``). ``parity`` and ``bench`` compare
a model with a checkpoint only after ``check_model_matches``; ``parity MODEL`` without CKPT
takes the checkpoint the model records.
"""

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from wscnet.checkpoint import recorded_data_source
from wscnet.errors import UserError

from .onnx_metadata import PROVENANCE_KEYS

HASH_SHOWN = 12  # hex digits of a hash in messages


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Content hash of ``path`` (cached while the file's size and modification time stay)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def provenance_metadata(checkpoint: Path, ckpt: dict[str, Any]) -> dict[str, str]:
    """The provenance keys of a model exported from ``checkpoint`` (already loaded as ``ckpt``)."""

    source = recorded_data_source(ckpt) or {}
    values = {
        "checkpoint_sha256": file_sha256(checkpoint),
        "checkpoint_path": str(Path(checkpoint).resolve()),
        "checkpoint_epoch": str(int(ckpt.get("epoch", 0))),
        "training_data": str(source.get("data") or ""),
    }
    assert tuple(values) == PROVENANCE_KEYS
    return values


def model_file_metadata(path: Path):
    """``runtime.metadata.ModelMetadata`` of an ONNX model or TensorRT engine, without running it
    (a ``triton://`` model: what its server's config says)."""
    import onnx

    from runtime.backends import open_backend
    from runtime.backends.tensorrt_backend import read_sidecar
    from runtime.backends.triton_backend import is_triton_url
    from runtime.metadata import ModelMetadata

    if is_triton_url(path):
        with open_backend(path) as served:
            return served.metadata
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    if path.suffix.lower() != ".onnx":
        return read_sidecar(path).metadata
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props}, path)


def recorded_checkpoint(model_path: Path, metadata) -> Path:
    """The checkpoint ``model_path`` was exported from, as its metadata records it."""
    recorded = metadata.extra.get("checkpoint_path")
    if not recorded:
        raise UserError(f"{model_path}: records no checkpoint (exported by an older version); pass CKPT")
    if not Path(recorded).is_file():
        raise UserError(
            f"{model_path}: the checkpoint it was exported from, {recorded}, is gone (moved or deleted); pass CKPT"
        )
    return Path(recorded)


def check_model_matches(model_path: Path, metadata, checkpoint: Path, ckpt: dict[str, Any]) -> None:
    """Refuse, in one line naming both, a checkpoint that is not the one the model came from."""
    model_classes, ckpt_classes = list(metadata.class_names), list(ckpt["class_names"])
    if model_classes != ckpt_classes:
        raise UserError(
            f"{model_path} has classes {json.dumps(model_classes)} but {checkpoint} has "
            f"{json.dumps(ckpt_classes)}; pass the checkpoint it was exported from"
        )
    recorded = metadata.extra.get("checkpoint_sha256")
    if recorded:
        actual = file_sha256(checkpoint)
        if actual != recorded:
            raise UserError(
                f"{model_path} was exported from {metadata.extra.get('checkpoint_path', '?')} "
                f"(sha256 {recorded[:HASH_SHOWN]}, epoch {metadata.extra.get('checkpoint_epoch', '?')}, "
                f"{metadata.input_size} px), not from {checkpoint} (sha256 {actual[:HASH_SHOWN]}, epoch "
                f"{ckpt.get('epoch', '?')}, {ckpt['input_size']} px)"
            )
    elif metadata.input_size != int(ckpt["input_size"]):  # no hash: input size is what can be told
        raise UserError(
            f"{model_path} takes {metadata.input_size} px input but {checkpoint} was "
            f"trained at {ckpt['input_size']} px; pass the checkpoint it was exported from"
        )
