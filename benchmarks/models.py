"""What bench measures: the inputs on the command line turned into cases, and the files each
back-end needs, exported (once, cached under ``--out/models``) from the case's checkpoint.

An input is a checkpoint (``.pt``/``.pth``/``.ckpt``: every back-end, exported as needed), a
model file (``.onnx``/``.engine``/``.plan``: measured as it is, on the back-ends of its kind and
precision), or an architecture name, ``resnet18`` or ``resnet18@224``, for which a default
model is made: latency does not need trained weights, but top-1 agreement needs confident
predictions, so it is trained for 30 SGD steps on the synthetic images at 64 px
(``wscnet.tiny_model.make_trained_checkpoint``; the weights fit any input size).
"""

import importlib.util
import logging
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.contract import InputContract
from wscnet.choices import ARCHITECTURES, input_side_problem
from wscnet.errors import UserError

from .engines import TORCH_MISSING, BackendSpec, torch_installed

log = logging.getLogger("benchmarks")

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
MODEL_SUFFIXES = (".onnx", ".engine", ".plan")
DEFAULT_MODELS = ("resnet18@224", "resnet101@448")
DEFAULT_CLASSES = 8  # FI's eight emotions
DEFAULT_TRAIN_STEPS = 30  # enough for confident predictions, so top-1 agreement is not decided by ties


@dataclass(frozen=True)
class Case:
    label: str  # names the model in tables, e.g. "resnet18" or a checkpoint's stem
    img_size: int
    checkpoint: Path | None  # the PyTorch reference (and the export source)
    model_file: Path | str | None = None  # a given ONNX / engine file, measured as it is (str: a triton:// model)
    model_precision: str | None = None
    model_engine: str | None = None  # "onnx" | "tensorrt" | "triton"
    contract: InputContract | None = None  # a given file's input contract (its metadata)
    config: dict | None = None  # a given file's WSCNetConfig, from its metadata (for FLOPs)


def resolve_cases(
    inputs: list[str], img_sizes: list[int] | None, workdir: Path, reference: Path | None = None
) -> list[Case]:
    """One Case per (input, image size), default models when ``inputs`` is empty.

    Every input is checked before any default model is made, so a typo fails at once.
    """
    kinds = [classify(token) for token in inputs or DEFAULT_MODELS]
    cases = []
    for kind, token in kinds:
        path = Path(token)
        if kind == "checkpoint":
            sizes = img_sizes or [checkpoint_input_size(path)]
            cases += [Case(path.stem, s, path) for s in sizes]
        elif kind == "model":
            cases.append(model_file_case(token, reference))
        else:
            arch, size = parse_arch(token)
            ckpt = default_checkpoint(arch, workdir)
            cases += [Case(ckpt.stem, s, ckpt) for s in ([size] if size else img_sizes or [224])]
    return unique_labels(cases)


def unique_labels(cases: list[Case]) -> list[Case]:
    """Two inputs with one name (a/model.pt, b/model.pt) must not share exported files."""
    seen: dict[tuple[str, int], int] = {}
    named = []
    for case in cases:
        key = (case.label, case.img_size)
        seen[key] = seen.get(key, 0) + 1
        named.append(case if seen[key] == 1 else replace(case, label=f"{case.label}-{seen[key]}"))
    return named


def classify(token: str) -> tuple[str, str]:
    """("checkpoint" | "model" | "arch", token), or a UserError naming the input."""
    from runtime.backends.triton_backend import is_triton_url

    path = Path(token)
    if is_triton_url(token):
        return "model", token
    if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return "checkpoint", token
    if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
        return "model", token
    if path.exists():
        raise UserError(
            f"{path}: not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) or model file ({', '.join(MODEL_SUFFIXES)})"
        )
    parse_arch(token)
    return "arch", token


def parse_arch(token: str) -> tuple[str, int | None]:
    match = re.fullmatch(r"([a-z0-9_]+)(?:@(\d+))?", token)
    if not match or match.group(1) not in ARCHITECTURES:
        raise UserError(
            f"{token}: no such file, and not an architecture name ({', '.join(ARCHITECTURES)}, optionally @SIZE)"
        )
    if match.group(2) and (problem := input_side_problem(int(match.group(2)))):
        raise UserError(f"{token}: the size {problem}")
    return match.group(1), int(match.group(2)) if match.group(2) else None


def checkpoint_input_size(path: Path) -> int:
    from wscnet.checkpoint import read_checkpoint

    return int(read_checkpoint(path)["input_size"])


def model_file_case(token: str, reference: Path | None) -> Case:
    """A given ONNX model or engine (or a triton:// model on a server): size, precision and
    normalisation from its own metadata; its reference is ``reference`` (refused unless the file
    came from it) or the checkpoint the file records, when that is still there (both need torch:
    without it the file is measured without top-1 agreement, and bench says so in one line)."""
    from runtime.backends.triton_backend import is_triton_url

    served = is_triton_url(token)
    meta = model_file_metadata(token)
    path = Path(token)  # names it in messages and tables (a served model: its name)
    engine = "triton" if served else "onnx" if path.suffix.lower() == ".onnx" else "tensorrt"
    if not torch_installed():
        if reference is not None or meta.extra.get("checkpoint_path"):
            log.warning(
                f"{TORCH_MISSING}: top-1 agreement against the checkpoint needs it; measuring {path.name} without it"
            )
        reference = None
    elif reference is not None:
        from export.provenance import check_model_matches
        from wscnet.checkpoint import read_checkpoint

        check_model_matches(path, meta, reference, read_checkpoint(reference))
    else:
        reference = recorded_reference(path, meta)
    return Case(
        path.stem,
        meta.input_size,
        reference,
        token if served else path,
        meta.precision,
        engine,
        meta.contract,
        config_from_metadata(meta),
    )


def model_file_metadata(token: str):
    """The file's ``ModelMetadata``: the export side's reader where onnx is installed, else the
    runtime's own (ONNX Runtime reads an ONNX file's metadata; the lean install has no onnx)."""
    if importlib.util.find_spec("onnx") is not None and torch_installed():
        from export.provenance import model_file_metadata as read

        return read(token)
    from runtime.backends import open_backend
    from runtime.backends.tensorrt_backend import read_sidecar

    if Path(token).suffix.lower() in (".engine", ".plan"):
        return read_sidecar(Path(token)).metadata
    with open_backend(token, device="cpu") as backend:  # a triton:// model: its server's config
        return backend.metadata


def recorded_reference(path: Path, meta) -> Path | None:
    """The checkpoint ``path`` records, if it is still there unchanged; else None (no agreement)."""
    from export.provenance import check_model_matches
    from wscnet.checkpoint import read_checkpoint

    recorded = meta.extra.get("checkpoint_path")
    if not recorded or not Path(recorded).is_file():
        return None
    try:
        check_model_matches(path, meta, Path(recorded), read_checkpoint(recorded))
    except UserError as exc:
        print(f"bench: {exc}; measuring {path.name} without a reference", file=sys.stderr)
        return None
    print(f"bench: checking {path.name} against the checkpoint it records: {recorded}", file=sys.stderr)
    return Path(recorded)


def config_from_metadata(meta) -> dict | None:
    """The WSCNetConfig dict an exported file was made from, or None if its metadata lacks it."""
    keys = ("arch", "pool", "map_weight", "coupling", "head")
    if not all(key in meta.extra for key in keys + ("k",)):
        return None
    config = {key: str(meta.extra[key]) for key in keys}
    return {**config, "k": int(meta.extra["k"]), "num_classes": meta.num_classes}


def default_checkpoint(arch: str, workdir: Path) -> Path:
    """A briefly trained default model of ``arch`` (made once, kept under ``workdir``).

    Deep networks from random init can diverge in those few steps (resnet101 does: NaN weights);
    then the model stays at its random init (batch-norm statistics set on the synthetic images),
    which times the same, and its file is named ``ARCH-random.pt`` so the table says so: its
    predictions are far less confident, so low-precision rows may disagree on near ties.
    """
    trained, random = workdir / f"{arch}.pt", workdir / f"{arch}-random.pt"
    for path in (trained, random):
        if path.is_file():
            return path
    from wscnet.tiny_model import make_trained_checkpoint

    print(
        f"bench: training the default {arch} for {DEFAULT_TRAIN_STEPS} SGD steps on synthetic "
        f"images (once; kept as {trained})",
        file=sys.stderr,
        flush=True,
    )
    make_trained_checkpoint(trained, arch=arch, num_classes=DEFAULT_CLASSES, size=64, steps=DEFAULT_TRAIN_STEPS)
    if weights_finite(trained):
        return trained
    trained.unlink()
    print(
        f"bench: training {arch} diverged (NaN weights); using its random init instead ({random})",
        file=sys.stderr,
        flush=True,
    )
    save_random_checkpoint(arch, random)
    return random


def weights_finite(path: Path) -> bool:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def save_random_checkpoint(arch: str, path: Path) -> None:
    import numpy as np
    import torch

    from wscnet.checkpoint import make_checkpoint, save_checkpoint
    from wscnet.model import WSCNet, WSCNetConfig
    from wscnet.tiny_model import synthetic_batches
    from wscnet.training.batchnorm import recalibrate_batchnorm

    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch=arch, num_classes=DEFAULT_CLASSES))
    # batch-norm statistics of the synthetic images: without them a deep random network's
    # activations grow block by block (1e5 after resnet101) and overflow fp16
    recalibrate_batchnorm(model, synthetic_batches(DEFAULT_CLASSES, 64, np.random.default_rng(0)))
    model.eval()
    names = [f"class_{c}" for c in range(DEFAULT_CLASSES)]
    save_checkpoint(path, make_checkpoint(model, class_names=names, input_size=64))


def not_applicable(case: Case, spec: BackendSpec) -> str | None:
    """Why ``spec`` has no file for ``case`` (a given fp16 ONNX has no int8 row), or None."""
    if spec.engine == "triton" and case.model_engine != "triton":
        return "the triton row measures a triton://HOST:PORT/MODEL input"
    if case.model_engine == "triton" and spec.engine not in ("triton", "torch"):
        return "a model on a Triton server runs on the triton row (and torch, its reference)"
    if case.model_file is None:
        return None
    if spec.engine == "torch":
        return None if case.checkpoint else "a model file has no PyTorch model; give --reference CKPT"
    kind = {"onnx": "ONNX model", "tensorrt": "TensorRT engine", "triton": "Triton model"}[case.model_engine]
    if spec.file_precision != case.model_precision:
        return f"the given {kind} is {case.model_precision}, not {spec.file_precision}"
    if case.model_engine == "tensorrt" and spec.engine != "tensorrt":
        return "a TensorRT engine runs only on TensorRT"
    return None


def model_path(case: Case, spec: BackendSpec, batch: int, workdir: Path, calib_dir: Path, calib_n: int) -> Path:
    """The file ``spec`` runs for ``case`` at ``batch``, exported now unless already there."""
    if spec.engine == "torch":
        return case.checkpoint
    if case.model_file is not None and not (spec.engine == "tensorrt" and case.model_engine == "onnx"):
        return case.model_file
    req = export_request(case, workdir, calib_dir, calib_n)
    source = case.model_file or exported_onnx(req, spec.file_precision)  # a given ONNX file is built as it is
    if spec.engine in ("onnx", "openvino"):
        return source
    if spec.precision == "int8" and case.model_file is None:  # engines take the TensorRT Q/DQ layout
        source = req.file("int8-trt")
    # TensorRT takes fp16 as the fp16 ONNX and int8 as the Q/DQ ONNX; one static-batch engine
    # per batch, as trtexec measures a fixed shape
    engine = req.engine_file(spec.precision).with_suffix(f".b{batch}.engine")
    return cached(
        engine, source, lambda: build_trt(source, engine, spec.precision, batch, workdir / "trt-timing.cache")
    )


def export_request(case: Case, workdir: Path, calib_dir: Path, calib_n: int):
    """The export pipeline's request for ``case``'s files: any batch size, no parity (bench
    measures agreement itself), files named after the case (``resnet18_224.int8.onnx``)."""
    from export.exporter import ExportRequest

    return ExportRequest(
        case.checkpoint,
        workdir,
        name=f"{case.label}_{case.img_size}",
        img_size=case.img_size,
        dynamic_batch=True,
        calib=calib_dir,
        calib_n=calib_n,
        parity=False,
    )


def exported_onnx(req, precision: str) -> Path:
    """The ONNX file of ``precision`` (fp32, fp16 or int8), made by the export pipeline's steps
    unless it is newer than what it is made from."""
    from export.exporter import calibration_images, export_fp16, export_fp32, export_int8

    fp32 = cached(req.file("fp32"), req.checkpoint, lambda: export_fp32(req))
    if precision == "fp16":
        return cached(req.file("fp16"), fp32, lambda: export_fp16(req, fp32))
    if precision == "int8":
        quiet = lambda line: None  # noqa: E731
        return cached(req.file("int8"), fp32, lambda: export_int8(req, fp32, calibration_images(req), quiet)[0])
    return fp32


def cached(out: Path, source: Path, make) -> Path:
    """``out`` if it is newer than ``source``, else made by ``make()``."""
    if out.is_file() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    make()
    return out


def build_trt(onnx_path: Path, out: Path, precision: str, batch: int, timing_cache: Path) -> None:
    from export.tensorrt_build import build_engine

    build_engine(
        onnx_path,
        out,
        precision=precision,
        min_batch=batch,
        opt_batch=batch,
        max_batch=batch,
        timing_cache=timing_cache,
    )
