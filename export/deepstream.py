"""DeepStream drop-in: an nvinfer config and labels file beside a plain TensorRT plan.

DeepStream's Gst-nvinfer loads the plan through ``model-engine-file`` (the plan stays plain: no
header, the sidecar JSON beside it) and pre-processes each frame as
``y = net-scale-factor * (x - offsets[c])`` with x in 0–255: one scale for all channels. So:

- a model whose std is the same for the three channels maps exactly
  (net-scale-factor = 1 / (255·std), offsets = 255·mean);
- a model with per-channel std (ImageNet's) cannot be written this way: export it with
  ``--fold-normalization``, which puts ``(x/255 − mean) / std`` into the graph so the input is
  0–255 RGB, and the config says net-scale-factor=1, offsets=0;0;0.

Everything here works from the sidecar dict, so it is tested without TensorRT.
"""

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from wscnet.atomic import atomic_write_text
from wscnet.errors import UserError

from .log import log
from .onnx_metadata import read_metadata, write_metadata

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer's network-mode
FOLDED_KEY = "normalization_folded"  # metadata "1": the graph takes 0–255 RGB
LABELS_SUFFIX = ".labels.txt"
CONFIG_SUFFIX = ".nvinfer.txt"


def _floats(value) -> list[float]:
    return [float(v) for v in (json.loads(value) if isinstance(value, str) else value)]


def scale_and_offsets(metadata: dict) -> tuple[float, list[float]]:
    """(net-scale-factor, offsets) reproducing the model's normalisation from 0–255 pixels."""
    mean, std = _floats(metadata["mean"]), _floats(metadata["std"])
    if metadata.get(FOLDED_KEY) == "1":
        return 1.0, [0.0, 0.0, 0.0]
    if max(std) - min(std) > 1e-6 * max(std):
        raise UserError(
            f"std {std} differs per channel and nvinfer has one net-scale-factor: export with "
            "--fold-normalization (the graph then takes 0–255 RGB) for a DeepStream config"
        )
    return 1.0 / (255.0 * std[0]), [255.0 * m for m in mean]


def geometry(metadata: dict) -> str:
    """The resize the model expects: its input contract's geometry (files from before contracts: squash)."""
    from runtime.contract import FALLBACK_GEOMETRY

    contract = metadata.get("input_contract")
    if contract:
        return str((json.loads(contract) if isinstance(contract, str) else contract).get("geometry", FALLBACK_GEOMETRY))
    return FALLBACK_GEOMETRY


def extra_views(metadata: dict) -> list[str]:
    """The contract's further views (the runtime averages them with the first; nvinfer cannot)."""
    contract = metadata.get("input_contract")
    if not contract:
        return []
    return list((json.loads(contract) if isinstance(contract, str) else contract).get("extra_views", []))


def nvinfer_config(sidecar: dict, engine_name: str, labels_name: str) -> str:
    """The ``[property]`` group of a Gst-nvinfer config for the engine that ``sidecar`` describes."""
    meta = sidecar["metadata"]
    scale, offsets = scale_and_offsets(meta)
    size = int(meta["input_size"])
    shape = geometry(meta)
    keep_aspect = 0 if shape == "squash" else 1
    lines = [
        "# Gst-nvinfer config written by `python cli.py export --format engine` from the sidecar",
        f"# {engine_name}.json. Outputs: probs (the classes, as a classifier), det_scores and",
        "# sentiment_map (N×1×h×w) as tensor meta (output-tensor-meta=1) for the application.",
    ]
    if shape == "crop":
        lines.append("# The model expects a centre crop, which nvinfer cannot do: it letterboxes instead.")
    if shape == "letterbox":
        lines.append("# Letterbox: nvinfer pads with black pixels, the runtime with the mean colour.")
    if extra_views(meta):
        lines.append(f"# nvinfer runs the {shape} view only; the runtime also averages {'+'.join(extra_views(meta))}.")
    lines += [
        "[property]",
        "gpu-id=0",
        f"model-engine-file={engine_name}",
        f"labelfile-path={labels_name}",
        f"batch-size={int(sidecar['io']['batch']['max'])}",
        f"network-mode={NETWORK_MODE[meta.get('precision', 'fp32')]}",
        "network-type=1",
        "process-mode=1",
        "model-color-format=0",
        f"infer-dims=3;{size};{size}",
        f"net-scale-factor={scale!r}",
        "offsets=" + ";".join(repr(o) for o in offsets),
        f"maintain-aspect-ratio={keep_aspect}",
        f"symmetric-padding={keep_aspect}",
        "output-blob-names=probs;det_scores;sentiment_map",
        "classifier-threshold=0.0",
        "output-tensor-meta=1",
        "gie-unique-id=1",
    ]
    return "\n".join(lines) + "\n"


def labels_text(metadata: dict) -> str:
    """nvinfer classifier labels: one line per output attribute, labels separated by ';'."""
    names = json.loads(metadata["class_names"]) if isinstance(metadata["class_names"], str) else metadata["class_names"]
    return ";".join(str(n) for n in names) + "\n"


def write_deepstream_files(engine: Path, sidecar: dict) -> list[Path]:
    """``X.nvinfer.txt`` and ``X.labels.txt`` beside engine ``X``; [] (and one warning) when not expressible."""
    engine = Path(engine)
    config = engine.with_name(engine.stem + CONFIG_SUFFIX)
    labels = engine.with_name(engine.stem + LABELS_SUFFIX)
    try:
        text = nvinfer_config(sidecar, engine.name, labels.name)
    except UserError as exc:
        log.warning(f"DeepStream config not written: {exc}")
        return []
    atomic_write_text(labels, labels_text(sidecar["metadata"]))
    atomic_write_text(config, text)
    return [config, labels]


def fold_normalization(model: onnx.ModelProto) -> None:
    """Put ``(x/255 − mean)/std`` at the start of the graph, in place: the input becomes 0–255 RGB.

    The metadata then says mean 0 and std 1/255 (so every reader of the file feeds raw pixels)
    and ``normalization_folded`` 1.
    """
    metadata = read_metadata(model)
    if metadata.get(FOLDED_KEY) == "1":
        return
    mean, std = np.array(_floats(metadata["mean"])), np.array(_floats(metadata["std"]))
    graph = model.graph
    name = graph.input[0].name
    inner = f"{name}__normalized"
    for node in graph.node:
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = inner
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1)
    shift = (-mean / std).astype(np.float32).reshape(1, 3, 1, 1)
    graph.initializer.extend(
        [numpy_helper.from_array(scale, f"{name}__scale"), numpy_helper.from_array(shift, f"{name}__shift")]
    )
    nodes = [
        helper.make_node("Mul", [name, f"{name}__scale"], [f"{name}__scaled"], name="fold_normalization_scale"),
        helper.make_node("Add", [f"{name}__scaled", f"{name}__shift"], [inner], name="fold_normalization_shift"),
    ]
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    raw = {"mean": [0.0, 0.0, 0.0], "std": [1.0 / 255.0] * 3}
    updated = {**metadata, "mean": json.dumps(raw["mean"]), "std": json.dumps(raw["std"]), FOLDED_KEY: "1"}
    if metadata.get("input_contract"):  # the input contract carries mean/std too
        updated["input_contract"] = json.dumps({**json.loads(metadata["input_contract"]), **raw})
    write_metadata(model, updated)
