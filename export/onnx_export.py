"""Checkpoint -> FP32 ONNX: input ``image``, outputs ``probs``, ``det_scores``, ``sentiment_map``.

The cross-spatial pooling + map leave the exporter as one ``wscnet::CrossSpatialPoolMap`` node
(see ``export.fused_op``) unless ``fused_op=False``, which exports the same computation as plain
ops. Every file carries the metadata of ARCHITECTURE.md, so a runtime needs nothing else.
"""

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from runtime.backends.base import OUTPUT_NAMES
from wscnet.atomic import atomic_write_bytes
from wscnet.checkpoint import load_checkpoint
from wscnet.choices import input_side_problem
from wscnet.errors import UserError
from wscnet.model import WSCNet, deploy_outputs

from .fused_op import DOMAIN, DOMAIN_VERSION, ExportablePoolMap, make_function
from .onnx_metadata import metadata_from_checkpoint, write_metadata
from .provenance import provenance_metadata

OPSET = 18
IR_VERSION = 10  # ONNX Runtime 1.31 reads up to 13, TensorRT 10's parser up to 10
INPUT_NAME = "image"


class DeployModel(nn.Module):
    """WSCNet returning exactly the exported outputs (``wscnet.model.deploy_outputs``)."""

    def __init__(self, model: WSCNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return deploy_outputs(self.model(image))


def export_onnx(
    checkpoint: str | Path,
    out: Path,
    *,
    img_size: int | None = None,
    batch: int = 1,
    dynamic_batch: bool = False,
    fused_op: bool = True,
) -> Path:
    """Write the FP32 ONNX model of ``checkpoint`` to ``out`` (atomically) and return ``out``."""
    out = Path(out)
    model, ckpt = load_checkpoint(checkpoint)
    size = int(img_size or ckpt["input_size"])
    if problem := input_side_problem(size):
        raise UserError(f"{checkpoint}: --img-size {problem}")
    if batch < 1:
        raise UserError(f"--batch must be at least 1; got {batch}")
    fused = fused_op and model.config.head == "wscnet"  # the CAM baseline has no pool/map head
    if fused:
        model.pool_map = ExportablePoolMap(model.config.k, model.config.pool, model.config.map_weight)
    deploy = DeployModel(model).eval()
    example = torch.zeros(batch, 3, size, size)
    with torch.no_grad():
        shapes = [tuple(t.shape) for t in deploy(example)]
    proto = _trace_to_onnx(deploy, example, dynamic_batch, fused)
    if fused:
        proto.functions.append(make_function(model.config.pool, model.config.map_weight, OPSET))
        proto.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    _set_io_shapes(proto, size, shapes, "batch" if dynamic_batch else batch)
    proto.ir_version = IR_VERSION
    proto.producer_name = "wscnet-edge"
    metadata = metadata_from_checkpoint(ckpt, img_size=size, fused_op=fused)
    write_metadata(proto, {**metadata, **provenance_metadata(Path(checkpoint), ckpt)})
    onnx.checker.check_model(proto, full_check=True)
    atomic_write_bytes(out, proto.SerializeToString())
    return out


def _trace_to_onnx(deploy: nn.Module, example: torch.Tensor, dynamic_batch: bool, fused: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            deploy,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            custom_opsets={DOMAIN: DOMAIN_VERSION} if fused else None,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def _set_io_shapes(proto: onnx.ModelProto, size: int, shapes: list[tuple[int, ...]], batch_dim) -> None:
    """Name the dimensions plainly: ``batch`` (or the fixed batch), classes, map h×w."""

    def fill(value_info: onnx.ValueInfoProto, dims: tuple) -> None:
        shape = value_info.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            entry = shape.dim.add()
            if isinstance(d, str):
                entry.dim_param = d
            else:
                entry.dim_value = int(d)

    fill(proto.graph.input[0], (batch_dim, 3, size, size))
    for value_info, dims in zip(proto.graph.output, shapes):
        fill(value_info, (batch_dim, *dims[1:]))
    del proto.graph.value_info[:]  # stale inferred shapes; ONNX Runtime infers its own
