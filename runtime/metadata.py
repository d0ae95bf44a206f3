"""What the runtime needs to know about a model, read from the file itself.

ONNX models carry it in ``metadata_props`` (string values, lists JSON-encoded); TensorRT engines
in the sidecar ``X.engine.json`` under ``"metadata"`` with the same keys.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RuntimeUserError

REQUIRED_KEYS = ("class_names", "input_size", "mean", "std")


@dataclass(frozen=True)
class ModelMetadata:
    class_names: tuple[str, ...]
    input_size: int  # S of the N×3×S×S input
    mean: tuple[float, float, float]  # RGB, applied to pixel / 255
    std: tuple[float, float, float]
    precision: str = "fp32"
    extra: dict = field(default_factory=dict, compare=False)  # every other key, as stored

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_props(cls, props: dict, source: str | Path) -> "ModelMetadata":
        """Build from string-valued properties (ONNX custom_metadata_map or the sidecar's dict)."""
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise RuntimeUserError(
                f"{source}: model metadata lacks {', '.join(missing)}; "
                "export it with `python cli.py export` so the runtime knows classes and pre-processing"
            )
        try:
            class_names = tuple(str(name) for name in _decode(props["class_names"]))
            input_size = _decode(props["input_size"])
            if isinstance(input_size, list):  # [S, S] or [H, W]: the runtime needs a square input
                if len(set(input_size)) != 1:
                    raise ValueError(f"input_size must be square, got {input_size}")
                input_size = input_size[0]
            input_size = int(input_size)
            mean = tuple(float(v) for v in _decode(props["mean"]))
            std = tuple(float(v) for v in _decode(props["std"]))
        except (ValueError, TypeError) as exc:
            raise RuntimeUserError(f"{source}: unreadable model metadata ({exc})") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise RuntimeUserError(f"{source}: mean and std must be 3 values each, std > 0")
        if len(class_names) < 2 or input_size < 32:
            raise RuntimeUserError(f"{source}: metadata needs >= 2 class names and input_size >= 32")
        extra = {k: v for k, v in props.items() if k not in REQUIRED_KEYS and k != "precision"}
        precision = str(_decode(props.get("precision", "fp32")))
        return cls(class_names, input_size, mean, std, precision, extra)


def _decode(value):
    """Metadata values are strings; lists and numbers are JSON inside them (sidecars may hold them raw)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
