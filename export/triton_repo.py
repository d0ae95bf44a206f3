"""``export --format triton``: a Triton Inference Server model repository beside the exported ONNX.

Layout and fields follow Triton's model repository, model configuration and ensemble documents
(``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/<file>``; the ``ModelConfig``
protobuf, which the tests parse every written config with):

- ``wscnet_python``: the python backend running the ONNX through ONNX Runtime on CPU instances,
  for CPU servers (and the tests here, where the nvidia-pytriton wheel's server has only that backend);
- ``wscnet_onnx``: the ``onnxruntime`` backend on GPU instances, the FP32 ONNX, with ``--fp16`` run in
  FP16 by the TensorRT execution accelerator (not served here: no onnxruntime backend in the wheel);
- ``wscnet_trt``: the ``tensorrt_plan`` platform, written when ``--out`` holds an engine that
  ``export --format engine`` built for this model (not served here: no GPU, no tensorrt backend);
- ``wscnet_image``: an ensemble for encoded pictures: ``wscnet_preprocess`` (the file's bytes →
  the model's input views) → ``wscnet_python`` → ``wscnet_postprocess`` (views → one answer).

Every config carries the model's metadata (class names, input contract, precision, ...) as string
``parameters``, which the runtime's Triton back-end and the pre/post-processing steps read with
``json.loads``.
"""

import ast
import json
import shutil
from pathlib import Path

import onnx

from runtime.backends.tensorrt_backend import sidecar_path
from wscnet.atomic import atomic_write_text
from wscnet.errors import UserError

from .onnx_metadata import model_contract, read_metadata

PYTHON_MODEL = "wscnet_python"
ONNX_MODEL = "wscnet_onnx"
TENSORRT_MODEL = "wscnet_trt"
PREPROCESS_MODEL = "wscnet_preprocess"
POSTPROCESS_MODEL = "wscnet_postprocess"
ENSEMBLE_MODEL = "wscnet_image"
MODEL_NAMES = (PYTHON_MODEL, ONNX_MODEL, PREPROCESS_MODEL, POSTPROCESS_MODEL, ENSEMBLE_MODEL)
SERVED_ON_CPU = (PYTHON_MODEL, PREPROCESS_MODEL, POSTPROCESS_MODEL, ENSEMBLE_MODEL)  # python backend + ensemble
# Dynamic batching: a request waits at most this long for others to join its batch. 2 ms costs a
# single camera little and lets frames from several cameras meet in one batch.
MAX_QUEUE_DELAY_US = 2000
CPU_INSTANCES = 1  # one ONNX Runtime session per instance; it uses the threads below
PYTHON_THREADS = 2
# The encoded file (JPEG, PNG, ...) as a vector of bytes. Not TYPE_STRING: the python backend the
# nvidia-pytriton wheel ships is built for numpy 1, and under numpy 2 it cannot read or write string
# tensors (as_numpy returns other bytes, and DLPack, which numeric tensors cross by, has no strings).
IMAGE_INPUT = ("image_bytes", "TYPE_UINT8", [-1])
VIEWS = "views"  # the picture in each view of the input contract: V×3×S×S, one inference batch
ANSWER_OUTPUTS = ("label_index", "probabilities", "detection_probabilities", "sentiment_map")
ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def tensor_dims(model: onnx.ModelProto) -> tuple[list, list]:
    """[(name, Triton type, dims without the batch)] of the graph's inputs and outputs."""

    def dims(values):
        return [
            (
                v.name,
                ONNX_TYPES[v.type.tensor_type.elem_type],
                [d.dim_value or -1 for d in v.type.tensor_type.shape.dim][1:],
            )
            for v in values
        ]

    initializers = {i.name for i in model.graph.initializer}
    return dims([v for v in model.graph.input if v.name not in initializers]), dims(model.graph.output)


def _tensors(kind: str, tensors: list) -> str:
    body = ",\n".join(
        f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'
        for name, dtype, dims in tensors
    )
    return f"{kind} [\n{body}\n]"


def _parameters(values: dict[str, str]) -> str:
    return "\n".join(
        f"parameters {{ key: {json.dumps(key)} value: {{ string_value: {json.dumps(str(value), ensure_ascii=False)} }} }}"
        for key, value in sorted(values.items())
    )


def config_text(
    name: str,
    engine: str,
    inputs: list,
    outputs: list,
    max_batch: int,
    kind: str | None,
    parameters: dict[str, str],
    extra: str = "",
) -> str:
    """One complete ``config.pbtxt``. ``engine``: ``backend: "..."`` or ``platform: "..."``;
    ``kind`` None for an ensemble (it has no instances); dynamic batching when ``max_batch`` > 0."""
    parts = [
        f'name: "{name}"',
        engine,
        f"max_batch_size: {max_batch}",
        _tensors("input", inputs),
        _tensors("output", outputs),
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}" if max_batch else "",
        f"instance_group [ {{ count: {CPU_INSTANCES} kind: {kind} }} ]" if kind else "",
        _parameters(parameters),
        extra,
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _model_folder(repo: Path, name: str, files: dict[str, Path]) -> Path:
    """``repo/name/1/`` with ``files`` ({name in the version folder: source}) copied into it."""
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    for target, source in files.items():
        shutil.copy2(source, folder / "1" / target)
    return folder


def write_python_model(onnx_file: Path, repo: Path, max_batch: int) -> Path:
    """``wscnet_python``: ONNX Runtime on CPU inside the python backend."""
    model = onnx.load(str(onnx_file), load_external_data=False)
    folder = _model_folder(
        repo, PYTHON_MODEL, {"model.onnx": onnx_file, "model.py": Path(__file__).with_name("triton_python_model.py")}
    )
    parameters = {**read_metadata(model), "intra_op_threads": str(PYTHON_THREADS)}
    text = config_text(PYTHON_MODEL, 'backend: "python"', *tensor_dims(model), max_batch, "KIND_CPU", parameters)
    atomic_write_text(folder / "config.pbtxt", text)
    return folder


def tensorrt_accelerator() -> str:
    """ONNX Runtime's TensorRT execution provider in FP16 (Triton's ``optimization`` block)."""
    return (
        'optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" '
        'parameters { key: "precision_mode" value: "FP16" } } ] } }'
    )


def write_onnx_model(fp32_onnx: Path, repo: Path, max_batch: int, tensorrt_fp16: bool = False) -> Path:
    """``wscnet_onnx``: the onnxruntime backend on a GPU (Triton's own backend; not served here).
    Always the FP32 file: with ``tensorrt_fp16`` TensorRT runs it in FP16, as Triton's onnxruntime
    backend documents (``precision_mode``), which keeps FP32 where TensorRT needs it."""
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    if read_metadata(model).get("precision", "fp32") != "fp32":
        raise ValueError(f"{fp32_onnx}: the onnxruntime model must be the FP32 export")
    folder = _model_folder(repo, ONNX_MODEL, {"model.onnx": fp32_onnx})
    extra = tensorrt_accelerator() if tensorrt_fp16 else ""
    text = config_text(
        ONNX_MODEL, 'backend: "onnxruntime"', *tensor_dims(model), max_batch, "KIND_GPU", read_metadata(model), extra
    )
    atomic_write_text(folder / "config.pbtxt", text)
    return folder


def engines_beside(repo: Path) -> list[Path]:
    """The TensorRT engines ``export --format engine`` left in ``repo`` (each with its sidecar)."""
    return sorted(p for p in repo.glob("*.engine") if sidecar_path(p).is_file())


def write_tensorrt_model(engine: Path, fp32_onnx: Path, repo: Path, max_batch: int) -> Path:
    """``wscnet_trt_<precision>``: the plan for Triton's ``tensorrt_plan`` platform (not served here).
    The sidecar must describe this model (classes, contract, checkpoint), else one UserError line."""
    sidecar = json.loads(sidecar_path(engine).read_text())
    model = onnx.load(str(fp32_onnx), load_external_data=False)
    metadata = read_metadata(model)
    stored = sidecar.get("metadata", {})
    differ = [
        key for key in ("class_names", "input_contract", "checkpoint_sha256") if stored.get(key) != metadata.get(key)
    ]
    if differ:
        raise UserError(
            f"{engine}: built from another model ({', '.join(differ)} differ from {fp32_onnx.name}); "
            "rebuild it with --format engine or move it out of --out"
        )
    if sidecar.get("plugins"):
        raise UserError(
            f"{engine}: needs the TensorRT plugins {', '.join(sidecar['plugins'])}, which Triton "
            "would have to load; rebuild it without --trt-plugin"
        )
    inputs, outputs = tensor_dims(model)
    io = sidecar["io"]
    batch = io["inputs"]["image"]["shape"][0]
    if batch == -1:  # an optimization profile over the batch: Triton batches up to its max
        max_batch = min(max_batch, int(io["batch"]["max"]))
    else:  # a fixed batch: no batching by Triton, the batch is part of the dims
        max_batch = 0
        inputs, outputs = ([(n, t, [batch, *d]) for n, t, d in tensors] for tensors in (inputs, outputs))
    name = f"wscnet_trt_{stored.get('precision', 'fp32')}"
    folder = _model_folder(repo, name, {"model.plan": engine})
    text = config_text(name, 'platform: "tensorrt_plan"', inputs, outputs, max_batch, "KIND_GPU", stored)
    atomic_write_text(folder / "config.pbtxt", text)
    return folder


def runtime_files() -> list[Path]:
    """``runtime/__init__.py`` and every runtime module ``runtime.framing`` imports, transitively:
    the runtime's own frame → tensor function and view averaging, copied for the ensemble's steps."""
    import runtime

    root = Path(runtime.__file__).parent
    found, todo = {"__init__"}, ["framing"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        tree = ast.parse((root / f"{name}.py").read_text())
        todo += [
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        ]
    return [root / f"{name}.py" for name in sorted(found)]


def _ensemble_step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """One ``ensemble_scheduling`` step; map keys are the model's tensor names, values the ensemble's."""
    maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


def write_image_ensemble(onnx_file: Path, repo: Path, max_batch: int) -> list[Path]:
    """``wscnet_image`` = ``wscnet_preprocess`` → ``wscnet_python`` → ``wscnet_postprocess``.

    One request is one encoded picture (``image_bytes``); the preprocessing step decodes it and
    writes its views (the model's input contract, ``runtime.framing``) as one batch of V rows for
    the model, whose dynamic batcher may join them with other requests' rows; the postprocessing
    step averages the views' scores as the runtime does. The runtime modules both steps import are
    copied into their version folders (``runtime_files``), so the repository runs anywhere without
    this project installed, on exactly the code that exported the model.
    """
    model = onnx.load(str(onnx_file), load_external_data=False)
    metadata = read_metadata(model)
    views = len(model_contract(model, str(onnx_file)).views)
    if views > max_batch:
        raise UserError(
            f"--max-batch {max_batch} is below the {views} views a picture takes under the model's "
            "input contract (the ensemble sends them as one batch)"
        )
    (image,), outputs = tensor_dims(model)
    out = {name: (dtype, dims) for name, dtype, dims in outputs}
    per_view = [(name, dtype, [views, *dims]) for name, dtype, dims in outputs]
    answer = [
        ("label_index", "TYPE_INT32", [1]),
        ("probabilities", *out["probs"]),
        ("detection_probabilities", *out["det_scores"]),
        ("sentiment_map", out["sentiment_map"][0], out["sentiment_map"][1][1:]),
    ]
    folders = [
        write_step_model(repo, PREPROCESS_MODEL, [IMAGE_INPUT], [(VIEWS, image[1], [views, *image[2]])], metadata),
        write_step_model(repo, POSTPROCESS_MODEL, per_view, answer, metadata),
    ]
    scheduling = [
        _ensemble_step(PREPROCESS_MODEL, {IMAGE_INPUT[0]: IMAGE_INPUT[0]}, {VIEWS: VIEWS}),
        _ensemble_step(PYTHON_MODEL, {image[0]: VIEWS}, {name: f"view_{name}" for name, _, _ in outputs}),
        _ensemble_step(
            POSTPROCESS_MODEL, {name: f"view_{name}" for name, _, _ in outputs}, {n: n for n, _, _ in answer}
        ),
    ]
    extra = "ensemble_scheduling { step [\n  " + ",\n  ".join(scheduling) + "\n] }"
    folder = _model_folder(repo, ENSEMBLE_MODEL, {})  # an ensemble has no files, but a version folder
    atomic_write_text(
        folder / "config.pbtxt",
        config_text(ENSEMBLE_MODEL, 'platform: "ensemble"', [IMAGE_INPUT], answer, 0, None, metadata, extra),
    )
    return folders + [folder]


def write_step_model(repo: Path, name: str, inputs: list, outputs: list, metadata: dict[str, str]) -> Path:
    """A pre/post-processing step of the ensemble: ``triton_image_model.py`` as ``1/model.py``, the runtime
    modules it imports in ``1/runtime/``, its config (``step`` parameter: the name without ``wscnet_``)."""
    folder = _model_folder(repo, name, {"model.py": Path(__file__).with_name("triton_image_model.py")})
    shutil.rmtree(folder / "1" / "runtime", ignore_errors=True)
    (folder / "1" / "runtime").mkdir()
    for source in runtime_files():
        shutil.copy2(source, folder / "1" / "runtime" / source.name)
    parameters = {**metadata, "step": name.removeprefix("wscnet_")}
    atomic_write_text(
        folder / "config.pbtxt", config_text(name, 'backend: "python"', inputs, outputs, 0, "KIND_CPU", parameters)
    )
    return folder


def write_triton_repository(
    fp32_onnx: Path, repo: Path, max_batch: int, tensorrt_fp16: bool = False, cpu_onnx: Path | None = None
) -> list[Path]:
    """Every model into ``repo``; returns their config files. ``cpu_onnx``: the file the CPU models
    run (the INT8 export when there is one), the FP32 file otherwise."""
    cpu_onnx = cpu_onnx or fp32_onnx
    folders = [
        write_python_model(cpu_onnx, repo, max_batch),
        write_onnx_model(fp32_onnx, repo, max_batch, tensorrt_fp16),
        *write_image_ensemble(cpu_onnx, repo, max_batch),
        *(write_tensorrt_model(engine, fp32_onnx, repo, max_batch) for engine in engines_beside(repo)),
    ]
    return [folder / "config.pbtxt" for folder in folders]
