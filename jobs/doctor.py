"""``python cli.py doctor``: what this machine can run, one line per item; it never needs torch.

The report is a list of sections (``SECTIONS``), each a function that adds lines to the report:
versions (Python, torch or the one line saying it is not installed, ONNX Runtime and its providers,
OpenVINO, TensorRT, cuda-python, Triton), the GPUs nvidia-smi sees, then a check of every
back-end row of ``bench`` (``benchmarks.engines.SPECS``; a new back-end is one row there): can it
run here, and where torch is installed a smoke test on a tiny model exported on the spot and
compared with PyTorch (``benchmarks.smoke``); without torch, ``--model M.onnx`` smoke-tests the
runtime back-ends on a given model file instead. A new check is one more section function: the
camera check (``runtime.camera_check.camera_report``) plugs in as one of ``SECTIONS``.

Exit code 0 when every check passed, 3 when one failed or a requested back-end cannot run here.
"""

import importlib.metadata
import importlib.util
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import typer

from benchmarks.machine import installed_version, nvidia_smi_query
from runtime.camera_check import camera_report

CHECK_FAILED_EXIT = 3  # as wscnet.errors.CheckFailed: the command finished, a check did not pass
OPTIONAL_PACKAGES = ("openvino", "tensorrt", "cuda-python", "triton", "tritonclient")


@dataclass
class Item:
    name: str
    status: str  # ok | info | skipped | FAIL
    detail: str

    def line(self) -> str:
        return f"{self.name:<22} {self.status:<8} {self.detail}"


@dataclass
class DoctorOptions:
    requested: list[str] | None = None  # back-end rows asked for (--backends); None: every row
    smoke: bool = True
    model: Path | None = None  # a model file the runtime back-ends are smoke-tested on (torch-free)


@dataclass
class Report:
    options: DoctorOptions = field(default_factory=DoctorOptions)
    items: list[Item] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    gpu_capabilities: list[tuple[int, int]] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> Item:
        item = Item(name, status, detail)
        self.items.append(item)
        return item

    def failed(self) -> bool:
        return bool(self.failed_requests) or any(item.status == "FAIL" for item in self.items)

    def to_json(self) -> str:
        return json.dumps({"items": [asdict(i) for i in self.items], "failed": self.failed_requests}, indent=2)


Section = Callable[[Report], None]


def torch_build() -> tuple[str, str | None] | None:
    """(version, CUDA build) of the installed torch, read from its version file without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(spec.submodule_search_locations[0]) / "version.py").read_text()
    except OSError:
        return (installed_version("torch") or "unknown version", None)
    version = re.search(r"__version__\s*=\s*'([^']+)'", text)
    cuda = re.search(r"cuda(?::[^=]*)?=\s*'([^']+)'", text)
    return (version.group(1) if version else "unknown version", cuda.group(1) if cuda else None)


def versions_section(report: Report) -> None:
    import platform

    import onnxruntime as ort

    report.add("python", "info", platform.python_version())
    build = torch_build()
    if build is None:
        report.add("torch", "info", "not installed (training and export need the [train] extra)")
    else:
        report.add("torch", "info", f"{build[0]} (CUDA build {build[1] or 'none'})")
    report.add("onnxruntime", "info", f"{ort.__version__}; providers {', '.join(ort.get_available_providers())}")
    for package in OPTIONAL_PACKAGES:
        found = installed_version(package)
        report.add(package, "info" if found else "skipped", found or "not installed")


def gpu_section(report: Report) -> None:
    """One line per NVIDIA GPU (nvidia-smi: name, compute capability, memory), and the driver."""
    rows = nvidia_smi_query("name,compute_cap,memory.total,driver_version")
    if not rows:
        why = "nvidia-smi not found" if shutil.which("nvidia-smi") is None else "nvidia-smi lists none"
        report.add("gpu", "skipped", f"no CUDA GPU visible ({why})")
        return
    report.add("cuda", "info", f"driver {rows[0][3]}")
    for index, (name, capability, memory_mib, _driver) in enumerate(rows):
        major, _, minor = capability.partition(".")
        report.gpu_capabilities.append((int(major), int(minor or 0)))
        report.add(
            f"gpu {index}", "info", f"{name}, compute capability {capability}, {float(memory_mib) / 1024:.0f} GiB"
        )


def export_side_section(report: Report) -> None:
    """TensorRT plugin / AOT support: the export side's, so only where torch is installed."""
    if torch_build() is None:
        report.add("trt plugin", "skipped", "needs the export side (the [train] extra); the runtime does not")
        return
    from benchmarks.smoke import plugin_items

    plugin_items(report, report.gpu_capabilities)


def model_section(report: Report) -> None:
    """With ``--model``: the views its frames run through (and how they were decided), and what
    ``--device auto`` has picked for it on this machine."""
    if report.options.model is None:
        return
    if report.options.model.suffix.lower() != ".onnx":  # an engine loads only where TensorRT and a GPU are
        report.add("model views", "skipped", "read from the .onnx file the engine was built from")
        return
    from runtime.backends import open_backend
    from runtime.backends.probe import cached_choices
    from runtime.errors import RuntimeUserError

    try:
        backend = open_backend(report.options.model, "cpu")
    except RuntimeUserError as exc:
        report.add("model", "FAIL", str(exc))
        return
    views = backend.metadata.views_info()
    backend.close()
    report.add("model views", "info", describe_views(views))
    choices = cached_choices(report.options.model)
    if not choices:
        report.add("device auto", "info", "not probed on this machine yet; the first --device auto load probes")
    for threads, choice in choices:
        report.add("device auto", "info", f"{choice.get('device')} at --threads {threads} ({choice.get('reason')})")


def describe_views(info: dict) -> str:
    views = " + ".join(info["views"]) + (f" ({info['combine']})" if len(info["views"]) > 1 else "")
    if info["decided_by"] != "measurement at export":
        return f"{views}; decided by {info['decided_by']}"
    accuracy = info.get("camera_frame_accuracy")
    figures = f"camera-frame accuracy {accuracy:.3f} on {info.get('images')} images; " if accuracy is not None else ""
    return f"{views}; measured at export: {figures}{info.get('reason')}"


def backends_section(report: Report) -> None:
    """Every back-end row (or the requested ones): can it run here, and its smoke test."""
    from benchmarks.smoke import smoke_items

    smoke_items(report)


# The report, in order. A section adds its lines to the report; put a new one (e.g. the camera
# check, runtime.camera_check.camera_report) before backends_section, whose smoke tests take longest.
SECTIONS: list[Section] = [
    versions_section,
    gpu_section,
    export_side_section,
    model_section,
    camera_report,
    backends_section,
]


def run_doctor(
    requested: list[str] | None = None,
    smoke: bool = True,
    echo=print,
    model: Path | None = None,
    sections: list[Section] | None = None,
) -> Report:
    """Run every section, echoing each line as soon as it is known (a smoke test takes a while)."""
    report = Report(DoctorOptions(requested, smoke, model))
    shown = 0
    for section in SECTIONS if sections is None else sections:
        section(report)
        for item in report.items[shown:]:
            echo(item.line())
        shown = len(report.items)
    return report


def doctor(
    backends: Optional[str] = typer.Option(
        None,
        "--backends",
        help="Comma-separated back-ends to check, as bench "
        "names them or as webcam --device does (openvino, cuda, tensorrt); "
        "any that cannot run here or fails gives exit code 3 (default: every "
        "back-end, unavailable ones listed as skipped).",
    ),
    model: Optional[Path] = typer.Option(
        None,
        "--model",
        help="Smoke-test the runtime back-ends on this ONNX "
        "model (default: a tiny model built on the spot, which needs torch).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    no_smoke: bool = typer.Option(False, "--no-smoke", help="Versions, devices and availability only."),
) -> None:
    """What this machine can run: versions, GPUs, TensorRT plugin support, a smoke test per back-end."""
    from benchmarks.engines import canonical_backend
    from runtime.errors import RuntimeUserError
    from runtime.validate import check_runtime_model

    if model is not None:
        check_runtime_model(model)
        if not model.is_file():
            raise RuntimeUserError(f"{model}: --model file not found")
    requested = (
        list(dict.fromkeys(canonical_backend(b.strip()) for b in backends.split(",") if b.strip()))
        if backends
        else None
    )
    report = run_doctor(
        requested, smoke=not no_smoke, model=model, echo=(lambda line: None) if json_out else typer.echo
    )
    if json_out:
        typer.echo(report.to_json())
    if report.failed_requests:
        typer.echo(f"error: requested back-end(s) not working here: {', '.join(report.failed_requests)}", err=True)
    if report.failed():
        raise typer.Exit(CHECK_FAILED_EXIT)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
