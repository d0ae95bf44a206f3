"""What the page shows about the model: architecture, precision, back-end (and why it was picked),
input contract and the views a frame is run through (and how they were decided)."""

import json

from ..metadata import ModelMetadata

ARCHITECTURE_KEYS = ("arch", "head", "k", "pool", "map_weight", "coupling", "fused_op", "wscnet_version")


def model_info(
    metadata: ModelMetadata, backend: str = "", resize: str | None = None, device_choice: dict | None = None
) -> dict:
    """A JSON-ready description. The input contract is the model's own ``input_contract`` entry when
    its metadata has one; otherwise it is put together from what today's metadata holds.
    ``device_choice``: the back-end's ``choice`` (what ``--device`` picked and why)."""
    extra = metadata.extra
    info = {key: _plain(extra[key]) for key in ARCHITECTURE_KEYS if key in extra}
    info.update(precision=metadata.precision, backend=backend, class_names=list(metadata.class_names))
    contract = getattr(metadata, "contract", None)  # InputContract, once the metadata carries one
    contract = contract.to_dict() if hasattr(contract, "to_dict") else _plain(extra.get("input_contract"))
    if not isinstance(contract, dict):
        contract = {
            "input_size": metadata.input_size,
            "color": "RGB",
            "mean": list(metadata.mean),
            "std": list(metadata.std),
        }
        if resize:
            contract["geometry"] = resize
    info["input_contract"] = contract
    info["views"] = metadata.views_info()
    if device_choice is not None:
        info["device_choice"] = dict(device_choice)
    return info


def _plain(value):
    """Metadata values are strings, JSON inside when they are numbers or lists."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
