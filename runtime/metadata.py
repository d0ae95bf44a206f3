"""What the runtime needs to know about a model, read from the file itself.

ONNX models carry it in ``metadata_props`` (string values, lists JSON-encoded); TensorRT engines
in the sidecar ``X.engine.json`` under ``"metadata"`` with the same keys.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .contract import InputContract
from .errors import RuntimeUserError

REQUIRED_KEYS = ("class_names", "input_size", "mean", "std")
CONTRACT_KEY = "input_contract"  # JSON of InputContract.to_dict(); absent in files before it existed
VIEW_DECISION_KEY = "view_decision"  # JSON: what export measured when it chose the views (export/views.py)


@dataclass(frozen=True)
class ModelMetadata:
    class_names: tuple[str, ...]
    input_size: int  # S of the N×3×S×S input
    mean: tuple[float, float, float]  # RGB, applied to pixel / 255
    std: tuple[float, float, float]
    precision: str = "fp32"
    extra: dict = field(default_factory=dict, compare=False)  # every other key, as stored
    contract: InputContract | None = None  # None only while constructing: from_props always sets it

    def __post_init__(self) -> None:
        if self.contract is None:
            object.__setattr__(self, "contract", InputContract.fallback(self.input_size, self.mean, self.std))

    def contract_for(self, geometry: str | None = None) -> InputContract:
        """The model's contract, or a copy with ``geometry`` when the user overrides it."""
        return self.contract if geometry is None else self.contract.with_geometry(geometry)

    def override_note(self, geometry: str | None) -> str | None:
        """One line when ``geometry`` overrides the contract, naming what the model was trained with."""
        if geometry is None or (geometry,) == self.contract.views:
            return None
        trained = " + ".join(self.contract.views) + (
            "" if self.contract_recorded else " (fallback: no contract recorded)"
        )
        return f"note: --resize {geometry} overrides the model's input contract; it was trained with {trained}"

    @property
    def contract_recorded(self) -> bool:
        """False for files written before the contract existed (read with the documented fallback)."""
        return CONTRACT_KEY in self.extra

    @property
    def view_decision(self) -> dict | None:
        """What export measured when it chose the contract's views (candidates' accuracies on
        camera-shaped frames, the margin, the reason); None for files exported without it."""
        decision = _decode(self.extra.get(VIEW_DECISION_KEY)) if VIEW_DECISION_KEY in self.extra else None
        return decision if isinstance(decision, dict) else None

    def views_info(self) -> dict:
        """The views a frame is run through and why, for model-info pages and ``doctor``."""
        info = {"views": list(self.contract.views), "combine": self.contract.combine, "decided_by": "training"}
        decision = self.view_decision
        if decision is None:
            return info if self.contract_recorded else {**info, "decided_by": "fallback"}
        chosen = decision.get("candidates", {}).get(decision.get("chosen"), {})
        return {
            **info,
            "decided_by": "measurement at export",
            "reason": decision.get("reason"),
            "camera_frame_accuracy": chosen.get("mean"),
            "picture_accuracy": decision.get("picture_accuracy"),
            "images": decision.get("images"),
        }

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
        contract = _contract(props, input_size, mean, std, source)
        return cls(class_names, input_size, mean, std, precision, extra, contract)


def _contract(props: dict, input_size: int, mean, std, source) -> InputContract:
    """The recorded contract, or the documented fallback for files without one."""
    if CONTRACT_KEY not in props:
        return InputContract.fallback(input_size, mean, std)
    try:
        contract = InputContract.from_dict(_decode(props[CONTRACT_KEY]))
    except (ValueError, TypeError, AttributeError) as exc:
        raise RuntimeUserError(f"{source}: unreadable input contract in the model metadata ({exc})") from None
    if (contract.input_size, contract.mean, contract.std) != (input_size, mean, std):
        raise RuntimeUserError(f"{source}: the input contract disagrees with input_size/mean/std in the metadata")
    return contract


def _decode(value):
    """Metadata values are strings; lists and numbers are JSON inside them (sidecars may hold them raw)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
