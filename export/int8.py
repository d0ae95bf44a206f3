"""FP32 ONNX -> INT8 Q/DQ ONNX, calibrated on real images.

Explicit quantization as TensorRT 10/11 builds INT8 engines from it: symmetric activations,
symmetric per-channel weights (zero points 0). ONNX Runtime's CPU provider fuses the Q/DQ pairs
into QLinearConv / QLinearAdd kernels. The fused CrossSpatialPoolMap node, the softmaxes, the
reductions and the classification head stay in float32 (they are not in ``QUANTIZED_OPS``).
"""

import copy
import tempfile
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from wscnet.atomic import atomic_write_bytes
from wscnet.errors import UserError

from .calibration import CalibrationImages, check_calibration_memory, collect_ranges, ort_method
from .choices import CALIB_METHODS
from .images import ImageSet, folder_images
from .onnx_metadata import load_onnx, model_contract, read_metadata, set_precision, write_metadata

# The backbone and the detector: nearly all of the compute. The classification head (Mul, Concat,
# Gemm on a 2n vector) stays in float: cheap there, and it decides the top-1 class.
QUANTIZED_OPS = ["Conv", "Add", "MaxPool"]
QDQ_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True}


class ImageCalibrationReader:
    """onnxruntime.quantization CalibrationDataReader over image files, one image per batch.

    Only for ``quantize_int8(..., bounded=False)``: onnxruntime then keeps every image's
    intermediate outputs until the end (memory grows with the number of images).
    """

    def __init__(self, images: CalibrationImages) -> None:
        self.images = images
        self._iter = None

    def get_next(self):
        if self._iter is None:
            self._iter = iter(self.images)
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize_int8(
    fp32_onnx: Path,
    out: Path,
    images: ImageSet | Path,
    *,
    n: int = 256,
    method: str = "entropy",
    bounded: bool = True,
    keep_float: str | None = None,
) -> Path:
    """INT8 Q/DQ model of ``fp32_onnx`` calibrated on ``images`` (an ImageSet, or a folder of which
    ``n`` images are used), each made into a model input by the model's own contract; written atomically.

    ``bounded`` (default): ranges from ``export.calibration`` (memory flat in ``n``, the same
    ranges); ``bounded=False``: onnxruntime's one-shot calibration, kept for comparison.
    """
    if method not in CALIB_METHODS:
        raise UserError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}; got {method!r}")
    if n < 1:
        raise UserError(f"--calib-n must be at least 1; got {n}")
    model = load_onnx(fp32_onnx)
    metadata = read_metadata(model)
    if metadata.get("precision", "fp32") != "fp32":
        raise UserError(
            f"{fp32_onnx}: INT8 quantization starts from the FP32 model, this one is {metadata['precision']}"
        )
    layout = keep_float or float_layout(metadata.get("arch", ""))
    excluded = float_nodes(model, layout)
    if not isinstance(images, ImageSet):
        images = folder_images(Path(images), n)
    write_metadata(
        model, {**metadata, "int8_float_layout": layout, "int8_calibration": f"{method}, {len(images.files)} images"}
    )
    calibration = CalibrationImages(
        list(images.files), model.graph.input[0].name, model_contract(model, str(fp32_onnx))
    )
    if bounded:
        check_calibration_memory(model, method, QUANTIZED_OPS, calibration.size, Path(fp32_onnx).name)
    with tempfile.TemporaryDirectory(prefix="wscnet-int8-") as tmp:
        prepared = prepare_for_calibration(fp32_onnx, Path(tmp))
        if bounded:
            ranges = collect_ranges(prepared, calibration, method, QUANTIZED_OPS, Path(tmp))
            quantized = place_qdq(prepared, Path(tmp) / "int8.onnx", method, ranges=ranges, exclude=excluded)
        else:
            quantized = place_qdq(
                prepared, Path(tmp) / "int8.onnx", method, reader=ImageCalibrationReader(calibration), exclude=excluded
            )
        result = onnx.load(str(quantized))
    finish_int8(result, model, Path(out))
    return Path(out)


def finish_int8(result: onnx.ModelProto, source: onnx.ModelProto, out: Path) -> None:
    """The quantizer's output made deployable: ``source``'s functions and metadata back, one Q/DQ
    pair per consumer, precision int8; checked and written atomically to ``out``."""
    _restore_functions(result, source)
    dedicate_qdq_pairs(result)
    set_precision(result, "int8")
    onnx.checker.check_model(result, full_check=True)
    atomic_write_bytes(out, result.SerializeToString())


def prepare_for_calibration(fp32_onnx: Path, workdir: Path) -> Path:
    """Shape-inferred copy of the model; ORT's optimizer pass would inline the fused node's function."""
    from onnxruntime.quantization import quant_pre_process

    prepared = Path(workdir) / "prepared.onnx"
    quant_pre_process(str(fp32_onnx), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
    return prepared


def place_qdq(prepared: Path, out: Path, method: str, *, ranges=None, reader=None, exclude=()) -> Path:
    """Symmetric per-channel Q/DQ over ``QUANTIZED_OPS`` from given ``ranges`` (or a reader),
    leaving the nodes named in ``exclude`` in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    cache = None
    if ranges is not None:
        cache = Path(out).with_name("ranges.json")
        save_tensors_data(ranges, cache)
    quantize_static(
        str(prepared),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZED_OPS,
        nodes_to_exclude=list(exclude),
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=ort_method(method),
        extra_options=dict(QDQ_OPTIONS),
        calibration_cache_path=cache,
    )
    return Path(out)


# Layers left in float inside an otherwise INT8 backbone, by graph pattern (measured per
# backbone in studies/int8_layouts.py; the choice per architecture is ``float_layout``).
FLOAT_PATTERNS = ("squeeze_excitation", "hardswish")
FLOAT_LAYOUTS = ("none",) + tuple(  # every combination of the patterns: what int8_layouts measures
    "+".join(parts) for r in range(1, len(FLOAT_PATTERNS) + 1) for parts in combinations(FLOAT_PATTERNS, r)
)


def float_layout(arch: str) -> str:
    """The layout INT8 export uses for ``arch`` (the ``arch`` metadata of the FP32 model).

    MobileNetV3: the convs around each HardSwish stay float. Measured on a from-scratch
    mobilenet_v3_small (studies/int8_layouts.py, 200 held-out images): top-1 agreement 0.94 vs
    0.85 fully quantized, and ONNX Runtime's CPU provider ran it more than 10x faster (batch 1).
    """
    return "hardswish" if arch.startswith("mobilenet_v3") else "none"


def float_nodes(model: onnx.ModelProto, layout: str) -> list[str]:
    """Names of the nodes ``layout`` keeps in float.

    ``layout`` is ``none`` or parts joined by ``+``:
    - ``squeeze_excitation``: the two 1×1 convs of each squeeze-excitation block (the one fed by
      a GlobalAveragePool and the one feeding a HardSigmoid);
    - ``hardswish``: every conv whose output goes into a HardSwish or whose input comes out of one;
    - a block name (``backbone.15``, ``detector``; see ``block_of``): every quantizable node in it,
      as ``python cli.py study int8-sensitivity --target`` finds them.
    """
    parts = [] if layout == "none" else layout.split("+")
    blocks = {block_of(n.name) for n in model.graph.node if n.op_type in QUANTIZED_OPS}
    unknown = [p for p in parts if p not in FLOAT_PATTERNS and p not in blocks]
    if unknown:
        raise UserError(
            f"INT8 float layout {layout!r}: {', '.join(map(repr, unknown))} is neither "
            f"{', '.join(('none',) + FLOAT_PATTERNS)} nor a block of this model "
            f"({', '.join(sorted(blocks, key=_block_order))})"
        )
    kept = set(_pattern_nodes(model, [p for p in parts if p in FLOAT_PATTERNS]))
    kept |= {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and block_of(n.name) in parts}
    return sorted(kept)


def block_of(node_name: str) -> str:
    """'/model/backbone/backbone.3/block/...' -> 'backbone.3'; '/model/detector/Conv' -> 'detector'."""
    parts = node_name.strip("/").split("/")
    return parts[2] if len(parts) > 3 and parts[1] == "backbone" else parts[1] if len(parts) > 1 else node_name


def _block_order(name: str) -> tuple[int, str]:
    number = name.rsplit(".", 1)[-1]
    return (int(number), name) if number.isdigit() else (10**6, name)


def _pattern_nodes(model: onnx.ModelProto, patterns: list[str]) -> list[str]:
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)

    def fed_by(node, op: str) -> bool:
        return any(getattr(producer.get(name), "op_type", None) == op for name in node.input[:1])

    def feeds(node, op: str) -> bool:
        return any(user.op_type == op for user in consumers[node.output[0]])

    kept = []
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        if "squeeze_excitation" in patterns and (fed_by(node, "GlobalAveragePool") or feeds(node, "HardSigmoid")):
            kept.append(node.name)
        if "hardswish" in patterns and (fed_by(node, "HardSwish") or feeds(node, "HardSwish")):
            kept.append(node.name)
    return kept


def _restore_functions(result: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Keep the fused node's local function, its opset import and the metadata of ``source``."""
    names = {(f.domain, f.name) for f in result.functions}
    for function in source.functions:
        if (function.domain, function.name) not in names:
            result.functions.append(function)
    domains = {o.domain for o in result.opset_import}
    for opset in source.opset_import:
        if opset.domain not in domains:
            result.opset_import.append(opset)
    del result.metadata_props[:]
    result.metadata_props.extend(source.metadata_props)
    result.ir_version = source.ir_version


def dedicate_qdq_pairs(model: onnx.ModelProto) -> None:
    """Give every consumer of a quantized tensor its own Q -> DQ pair, in place.

    ONNX Runtime's x86 CPU provider runs int8 convolutions fast only as uint8 x int8: it shifts a
    symmetric int8 Q -> DQ pair to uint8 when the Q feeds exactly one DQ that feeds one node.
    The quantizer shares one Q/DQ among all consumers (a residual block's input feeds a conv and
    an Add), which keeps those convolutions in float. Each copy's scale is nudged by a few ulps
    (relative 1e-7) so that ONNX Runtime's constant sharing and common-subexpression passes do
    not merge the copies again. Zero points stay 0: the model keeps TensorRT's symmetric form.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {value.name for value in graph.output}
    nodes: list[onnx.NodeProto] = []
    removed: set[int] = set()
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "QuantizeLinear" or node.input[1] not in initializers:
            continue
        dqs = consumers[node.output[0]]
        if not dqs or any(d.op_type != "DequantizeLinear" or d.output[0] in graph_outputs for d in dqs):
            continue
        uses = [(dq, user) for dq in dqs for user in consumers[dq.output[0]]]
        if len(uses) <= 1:
            continue
        nodes.pop()
        scale = numpy_helper.to_array(initializers[node.input[1]])
        for j, (dq, user) in enumerate(uses):
            scale_name = f"{node.input[1]}__pair{j}"
            nudged = scale.copy()
            for _ in range(j):
                nudged = np.nextafter(nudged, np.inf, dtype=nudged.dtype)
            graph.initializer.append(numpy_helper.from_array(nudged, scale_name))
            q, new_dq = copy.deepcopy(node), copy.deepcopy(dq)
            q.name, new_dq.name = f"{node.name}__pair{j}", f"{dq.name}__pair{j}"
            q.input[1] = new_dq.input[1] = scale_name
            q.output[0] = new_dq.input[0] = f"{node.output[0]}__pair{j}"
            new_dq.output[0] = f"{dq.output[0]}__pair{j}"
            for k, name in enumerate(user.input):
                if name == dq.output[0]:
                    user.input[k] = new_dq.output[0]
                    break
            nodes += [q, new_dq]
        removed.update(id(dq) for dq in dqs)
    kept = [node for node in nodes if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(kept)


def qdq_scales(path: Path) -> dict[str, np.ndarray]:
    """Each QuantizeLinear node's scale in the model at ``path``, by node name."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.name: inits[n.input[1]] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits
    }
