"""ONNX (FP32, FP16 or INT8 Q/DQ) -> serialized TensorRT engine, with the sidecar JSON.

TensorRT 10/11 Python API: ``build_serialized_network``; a strongly typed network where the
types come from the file (always on 11.x, where it is the only mode; on 10.x for the FP16 and
INT8 files), an optimization profile over the batch range when the input batch is dynamic, a
workspace limit and a timing cache that is read before and written after each build.

The sidecar ``X.engine.json`` (ARCHITECTURE.md): ``metadata`` (the ONNX metadata_props),
``tensorrt_version``, ``gpu_name``, ``compute_capability``, ``built_from``, ``io``, and
``plugins`` (plugin ids a process must register before deserializing).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.backends.tensorrt_backend import sidecar_path
from wscnet.atomic import atomic_write_bytes, atomic_write_text
from wscnet.errors import UserError

from .deepstream import write_deepstream_files
from .fused_op import DOMAIN, OP_TYPE
from .log import log
from .onnx_metadata import PRECISIONS, read_metadata
from .trt_plugin import plugin_mode

if TYPE_CHECKING:
    import tensorrt


def import_tensorrt():
    """The tensorrt module, or one clear line. Helpers import it lazily themselves (``import
    tensorrt as trt``) so that the static check (.ci/typecheck) sees NVIDIA's stubs there."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(
            "TensorRT is not installed (pip install tensorrt, on a machine with an NVIDIA GPU); "
            "--format engine needs it — the ONNX files work without it"
        ) from None
    return trt


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def use_strong_typing(trt_version: str, precision: str) -> bool:
    """11.x has only strongly typed networks; on 10.x the FP16/INT8 files carry their types."""
    major = version_tuple(trt_version)[0]
    if major < 10:
        raise UserError(f"TensorRT {trt_version} is too old: this exporter needs TensorRT 10 or newer")
    return major >= 11 or precision in ("fp16", "int8")


def network_flags(precision: str) -> int:
    """Network creation flags. STRONGLY_TYPED on 10.x for the FP16/INT8 files; on 11.x networks are
    always strongly typed and the flag is deprecated and ignored (NvInfer.h 11), so none is passed."""
    import tensorrt as trt

    strong = use_strong_typing(trt.__version__, precision)  # refuses TensorRT < 10
    if strong and version_tuple(trt.__version__)[0] == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def batch_range(
    onnx_model: onnx.ModelProto,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
) -> tuple[int, int, int] | None:
    """(min, opt, max) for a dynamic batch; None for a fixed-batch file."""
    dim = onnx_model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value"):
        return None
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise UserError(f"batch range must satisfy 1 <= min <= opt <= max; got {min_batch}, {opt_batch}, {max_batch}")
    return min_batch, opt_batch, max_batch


def fold_int32_bias_dequantize(model: onnx.ModelProto) -> int:
    """Replace DequantizeLinear of int32 initialisers (quantized biases) by float initialisers.

    ONNX Runtime's quantizer stores conv biases as int32 + DequantizeLinear; TensorRT's explicit
    quantization takes Q/DQ only on int8 (and fp8/int4) tensors and wants biases in float.
    Returns the number of nodes folded; the model changes in place.
    """
    inits = {init.name: init for init in model.graph.initializer}
    kept, folded = [], 0
    for node in model.graph.node:
        source = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if source is None or source.data_type != TensorProto.INT32 or node.input[1] not in inits:
            kept.append(node)
            continue
        values = numpy_helper.to_array(source).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
        dequantized = ((values - zero) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(dequantized, node.output[0]))
        folded += 1
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return folded


def fused_nodes(onnx_model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in onnx_model.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]


def set_fused_node_mode(onnx_model: onnx.ModelProto, mode: str) -> None:
    """Mark the fused nodes for TensorRT's parser, in place.

    "aot": keep ``plugin_namespace`` and add ``aot=1`` so the parser creates the plugin's AOT
    implementation; "inline": drop ``plugin_namespace`` so the parser builds the local function.
    """
    if mode not in ("aot", "inline"):
        raise ValueError(f"fused node mode must be aot or inline, got {mode!r}")
    for node in fused_nodes(onnx_model):
        keep = [a for a in node.attribute if a.name != "aot" and (mode == "aot" or a.name != "plugin_namespace")]
        del node.attribute[:]
        node.attribute.extend(keep)
        if mode == "aot":
            node.attribute.append(helper.make_attribute("aot", 1))


def sidecar_data(
    metadata: dict[str, str],
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str | None,
    built_from: Path,
    input_size: int,
    batch: tuple[int, int, int] | int,
    plugins: list[str],
    precision: str,
    fused_node: str = "inline",
    aot_kernels: list[dict] | None = None,
) -> dict[str, Any]:
    """``plugins``: ids a loading process must register (none for inline or AOT fused nodes)."""
    metadata = {**metadata, "precision": precision}
    if isinstance(batch, int):
        batch_info = {"min": batch, "opt": batch, "max": batch}
        batch_dim: int | str = batch
    else:
        batch_info = dict(zip(("min", "opt", "max"), batch))
        batch_dim = -1
    return {
        "metadata": metadata,
        "tensorrt_version": tensorrt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "built_from": str(built_from),
        "io": {
            "inputs": {"image": {"shape": [batch_dim, 3, input_size, input_size], "dtype": "float32"}},
            "outputs": ["probs", "det_scores", "sentiment_map"],
            "batch": batch_info,
        },
        "plugins": plugins,
        "fused_node": fused_node,
        "aot_kernels": aot_kernels or [],
    }


def gpu_identity() -> tuple[str, str | None]:
    """(GPU name, compute capability 'major.minor') of device 0."""
    import torch

    if not torch.cuda.is_available():
        raise UserError("no CUDA GPU is visible: TensorRT engines are built on the GPU that will run them")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


# The builder holds the parsed network's weights, the engine being built and its serialized
# copy: about three times the ONNX weights, besides the workspace and one batch's tensors.
ENGINE_MODEL_COPIES = 3


def check_engine_memory(model: onnx.ModelProto, max_batch: int, workspace_mb: int, name: str) -> None:
    """One line before TensorRT starts when the workspace, weights and largest batch will not fit."""
    from wscnet.memory import (
        FORWARD_PER_LARGEST,
        MB,
        current_rss_bytes,
        device_room_bytes,
        memory_limit_bytes,
        require_on_device,
    )

    from .footprint import ModelFootprint

    footprint = ModelFootprint(model)
    others = ENGINE_MODEL_COPIES * footprint.weights + max_batch * FORWARD_PER_LARGEST * footprint.largest
    need = others + workspace_mb * MB
    room = device_room_bytes()
    if room is None:
        room = memory_limit_bytes() - current_rss_bytes()
    fix = ""
    if room > others + 256 * MB:
        fix = f"--workspace-mb {int((room - others) / MB) // 256 * 256} would fit"
    elif max_batch > 1:
        fix = "lower --max-batch or --workspace-mb"
    require_on_device(f"TensorRT build of {name} (workspace {workspace_mb} MB, batch up to {max_batch})", need, fix)


@dataclass
class BuildSettings:
    precision: str | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mb: int = 2048
    timing_cache: Path | None = None
    use_plugin: bool = False


def build_engine(onnx_path: Path, engine: Path, *, echo=log.info, **settings) -> Path:
    """Build ``engine`` from ``onnx_path``; write ``engine``.json beside it. Returns ``engine``.

    ``settings`` are the fields of ``BuildSettings``.
    """
    trt = import_tensorrt()
    opts = BuildSettings(**settings)
    onnx_path, engine = Path(onnx_path), Path(engine)
    model = onnx.load(str(onnx_path))
    metadata = read_metadata(model)
    precision = check_precision(onnx_path, metadata, opts.precision)
    gpu_name, capability = gpu_identity()
    fused_node = prepare_fused_node(model, opts.use_plugin, trt.__version__, echo, capability)
    if precision == "int8":
        fold_int32_bias_dequantize(model)
    check_engine_memory(model, opts.max_batch, opts.workspace_mb, onnx_path.name)
    builder, network, _parser = parse_network(model, onnx_path, precision)
    batches = batch_range(model, opts.min_batch, opts.opt_batch, opts.max_batch)
    config, cache = make_builder_config(builder, int(metadata["input_size"]), batches, opts)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    atomic_write_bytes(engine, bytes(serialized))
    if opts.timing_cache is not None:
        atomic_write_bytes(opts.timing_cache, bytes(cache.serialize()))
    fixed = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    sidecar = sidecar_data(
        metadata,
        tensorrt_version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=capability,
        built_from=onnx_path,
        input_size=int(metadata["input_size"]),
        batch=batches or int(fixed),
        plugins=[],
        precision=precision,
        fused_node=fused_node,
        aot_kernels=aot_kernel_records(fused_node),
    )
    atomic_write_text(sidecar_path(engine), json.dumps(sidecar, indent=2) + "\n")
    for path in write_deepstream_files(engine, sidecar):
        echo(f"DeepStream: {path}")
    return engine


def check_precision(onnx_path: Path, metadata: dict[str, str], precision: str | None) -> str:
    precision = precision or metadata.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if metadata.get("precision", precision) != precision:
        raise UserError(
            f"{onnx_path}: is a {metadata['precision']} model; build a {precision} engine from the "
            f"{precision} ONNX file"
        )
    return precision


def prepare_fused_node(
    model: onnx.ModelProto,
    use_plugin: bool,
    trt_version: str,
    echo=log.info,
    capability: str | None = None,
) -> str:
    """ "none", "inline" (the function body) or "aot-plugin"; registers the plugin for AOT,
    compiled for ``capability`` ("major.minor", the building GPU)."""
    if not fused_nodes(model):
        return "none"
    mode = "inline"
    if use_plugin:
        mode, why = plugin_mode(version_tuple(trt_version))
        echo(why)
    set_fused_node_mode(model, mode)
    if mode == "aot":
        from .trt_plugin import register_plugin

        major, minor = version_tuple(capability or "0.0")[:2]
        register_plugin(capability=(major, minor) if capability else None)
        return "aot-plugin"
    return "inline"


def aot_kernel_records(fused_node: str) -> list[dict]:
    """What the AOT kernels baked into the plan were compiled as (PTX ISA and target)."""
    if fused_node != "aot-plugin":
        return []
    from .trt_plugin import aot_kernels_compiled, ptx_header

    return [{"name": k.name, **ptx_header(k.ptx)} for k in aot_kernels_compiled()]


def parse_network(
    model: onnx.ModelProto,
    onnx_path: Path,
    precision: str,
) -> tuple["tensorrt.Builder", "tensorrt.INetworkDefinition", "tensorrt.OnnxParser"]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(precision))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse this model: {errors[:300]}")
    return builder, network, parser  # the parser must outlive the build


def make_builder_config(
    builder: "tensorrt.Builder",
    size: int,
    batches: tuple[int, int, int] | None,
    opts: BuildSettings,
) -> tuple["tensorrt.IBuilderConfig", "tensorrt.ITimingCache"]:
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if batches is not None:
        profile = builder.create_optimization_profile()
        lo, opt, hi = (trt.Dims([b, 3, size, size]) for b in batches)
        profile.set_shape("image", lo, opt, hi)
        config.add_optimization_profile(profile)
    return config, _load_timing_cache(config, opts.timing_cache)


def _load_timing_cache(config: "tensorrt.IBuilderConfig", path: Path | None) -> "tensorrt.ITimingCache":
    data = b""
    if path is not None and Path(path).is_file():
        data = Path(path).read_bytes()
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=True)  # a cache from another GPU is just ignored
    return cache
