"""``python cli.py doctor``: what this machine can run, one line per item, with a smoke test.

Versions (Python, torch, ONNX Runtime and its providers, TensorRT, CUDA, cuda-python, Triton),
each GPU with its compute capability, TensorRT plugin / AOT support (and whether Triton compiles
the plugin's kernel to PTX here), then every runnable back-end of ``bench``'s table
(``benchmarks.backends.SPECS``: a new back-end is one row there) runs a tiny model built on the
spot: exported, run, compared with PyTorch. A requested back-end that is unavailable or fails
makes the exit code non-zero.
"""

import contextlib
import importlib.util
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backends import SPECS, skip_reason
from .machine import gpu_info, library_versions

SMOKE_SIZE = 64  # input side of the tiny model
SMOKE_IMAGES = 12


@dataclass
class Item:
    name: str
    status: str  # ok | info | skipped | FAIL
    detail: str

    def line(self) -> str:
        return f"{self.name:<22} {self.status:<8} {self.detail}"


@dataclass
class Report:
    items: list[Item] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> Item:
        item = Item(name, status, detail)
        self.items.append(item)
        return item

    def to_json(self) -> str:
        return json.dumps({"items": [asdict(i) for i in self.items], "failed": self.failed_requests}, indent=2)


def version_items(report: Report) -> None:
    import onnxruntime as ort
    import torch

    versions = library_versions()
    report.add("python", "info", versions["python"])
    report.add("torch", "info", f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    report.add("onnxruntime", "info", f"{ort.__version__}; providers {', '.join(ort.get_available_providers())}")
    for package in ("tensorrt", "cuda-python", "triton"):
        found = _version(package)
        report.add(package, "info" if found else "skipped", found or "not installed")


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_items(report: Report) -> list[tuple[int, int]]:
    """One line per GPU; returns their compute capabilities."""
    import torch

    if not torch.cuda.is_available():
        report.add("gpu", "skipped", "no CUDA GPU visible (torch.cuda.is_available() is False)")
        return []
    info = gpu_info() or {}
    report.add("cuda", "info", f"runtime {torch.version.cuda}, driver {info.get('driver') or '?'}")
    capabilities = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        memory = torch.cuda.get_device_properties(index).total_memory / 2**30
        report.add(f"gpu {index}", "info", f"{torch.cuda.get_device_name(index)}, compute capability {major}.{minor}, {memory:.0f} GiB")
        capabilities.append((major, minor))
    return capabilities


def plugin_items(report: Report, capabilities: list[tuple[int, int]]) -> None:
    """TensorRT's Python plugins / AOT, and whether Triton compiles the plugin kernel to PTX here."""
    from export.tensorrt_build import version_tuple
    from export.trt_plugin import compile_ptx, plugin_mode, ptx_header

    trt_version = _version("tensorrt")
    if trt_version is None:
        report.add("trt plugin", "skipped", "TensorRT not installed (--trt-plugin needs TensorRT >= 10.9 for AOT)")
    else:
        mode, why = plugin_mode(version_tuple(trt_version))
        report.add("trt plugin", "ok" if mode == "aot" else "info", why)
    if importlib.util.find_spec("triton") is None:
        report.add("aot kernel ptx", "skipped", "Triton not installed")
        return
    target = capabilities[0] if capabilities else (8, 0)
    try:
        kernel = compile_ptx((32, 7, 7), 4, "max", "softmax", "float32", target)
    except Exception as exc:  # a doctor reports, it does not crash
        report.add("aot kernel ptx", "FAIL", _first_line(exc))
        return
    head = ptx_header(kernel.ptx)
    report.add("aot kernel ptx", "ok", f"Triton compiled the plugin kernel: PTX {head['ptx_isa']} for {head['target']} ({len(kernel.ptx)} bytes)")


def smoke_items(report: Report, requested: list[str] | None, workdir: Path) -> None:
    """Run the tiny model on every back-end (or the requested ones); record failures of requested ones."""
    names = requested or list(SPECS)
    unknown = [n for n in names if n not in SPECS]
    for name in unknown:
        report.add(f"smoke {name}", "FAIL", f"unknown back-end; known: {', '.join(SPECS)}")
        report.failed_requests.append(name)
    from .models import Case, not_applicable

    tiny: dict = {}
    bare = Case(label="tiny", img_size=SMOKE_SIZE, checkpoint=None)  # a checkpoint's case: no triton:// model
    for name in [n for n in names if n in SPECS]:
        reason = skip_reason(SPECS[name]) or not_applicable(bare, SPECS[name])
        if reason is not None:
            report.add(f"smoke {name}", "skipped", reason)
            if requested:
                report.failed_requests.append(name)
            continue
        tiny = tiny or _tiny_model(workdir)
        item = _smoke_one(report, name, tiny, workdir)
        if item.status == "FAIL":
            report.failed_requests.append(name)


def _tiny_model(workdir: Path) -> dict:
    from wscnet.tiny_model import make_trained_checkpoint, write_image_folder

    started = time.perf_counter()
    ckpt = make_trained_checkpoint(workdir / "tiny.pt", size=SMOKE_SIZE)
    images = write_image_folder(workdir / "images", 6, SMOKE_IMAGES // 6, SMOKE_SIZE, seed=5)
    return {"ckpt": ckpt, "images": images, "seconds": time.perf_counter() - started}


def _smoke_one(report: Report, name: str, tiny: dict, workdir: Path) -> Item:
    spec = SPECS[name]
    started = time.perf_counter()
    try:
        detail, ok = (_smoke_torch if spec.engine == "torch" else _smoke_file)(spec, tiny, workdir)
    except Exception as exc:  # a broken back-end is a line, not a traceback
        return report.add(f"smoke {name}", "FAIL", _first_line(exc))
    seconds = time.perf_counter() - started
    return report.add(f"smoke {name}", "ok" if ok else "FAIL", f"{detail} ({seconds:.1f} s)")


def _smoke_file(spec, tiny: dict, workdir: Path) -> tuple[str, bool]:
    from export.parity import run_parity

    from .models import Case, model_path

    case = Case(label="tiny", img_size=SMOKE_SIZE, checkpoint=tiny["ckpt"])
    path = model_path(case, spec, 1, workdir, tiny["images"], SMOKE_IMAGES)
    report = run_parity(path, tiny["ckpt"], tiny["images"], n=SMOKE_IMAGES, progress=False)
    detail = (f"{path.name}: top-1 agreement {report['top1_agreement'] * 100:.0f} %, "
              f"map correlation {report['map_correlation']:.4f}, {'PASS' if report['passed'] else 'FAIL'}")
    return detail, bool(report["passed"])


def _smoke_torch(spec, tiny: dict, workdir: Path) -> tuple[str, bool]:
    """PyTorch on ``spec.device`` against PyTorch on the CPU, on the same images."""
    import numpy as np

    from export.images import find_images, load_batch
    from wscnet.checkpoint import checkpoint_contract

    from .torch_runner import TorchRunner

    outputs = []
    for device in ("cpu", spec.device):
        runner = TorchRunner(device=device)
        runner.load(tiny["ckpt"])
        batch = load_batch(find_images(tiny["images"], SMOKE_IMAGES), checkpoint_contract(runner.checkpoint))
        outputs.append(runner.infer(batch))
    diff = float(np.abs(outputs[0]["probs"] - outputs[1]["probs"]).max())
    ok = all(np.isfinite(o["probs"]).all() for o in outputs) and diff < 1e-3
    return f"{spec.device}: probs max abs vs CPU {diff:.1e}", ok


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def run_doctor(requested: list[str] | None = None, smoke: bool = True, echo=print) -> Report:
    """Collect every item, echoing each line as it is known (a smoke test takes a while)."""
    report = Report()
    shown = 0

    def flush() -> None:
        nonlocal shown
        for item in report.items[shown:]:
            echo(item.line())
        shown = len(report.items)

    version_items(report)
    flush()
    plugin_items(report, gpu_items(report))
    flush()
    if smoke:  # the exporters print progress: keep stdout for the report (--json)
        with tempfile.TemporaryDirectory(prefix="wscnet-doctor-") as tmp, contextlib.redirect_stdout(sys.stderr):
            smoke_items(report, requested, Path(tmp))
    flush()
    return report
