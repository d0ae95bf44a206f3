"""``doctor``'s checks of bench's back-end rows (``engines.SPECS``) and of the TensorRT plugin.

Where torch is installed, every runnable row runs a tiny model built on the spot: exported, run,
compared with PyTorch (``export.parity``). Without torch, a row is checked for what it needs, and
``doctor --model M.onnx`` runs the given file on every runtime row that takes its precision,
against ONNX Runtime on the CPU. Failures are lines of the report, never tracebacks.
"""

import contextlib
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .engines import SPECS, skip_reason, torch_installed

SMOKE_SIZE = 64  # input side of the tiny model
SMOKE_IMAGES = 12


def plugin_items(report, capabilities: list[tuple[int, int]]) -> None:
    """TensorRT's Python plugins / AOT, and whether Triton compiles the plugin kernel to PTX here."""
    from export.tensorrt_build import version_tuple
    from export.trt_plugin import compile_ptx, plugin_mode, ptx_header

    from .machine import installed_version

    trt_version = installed_version("tensorrt")
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
        report.add("aot kernel ptx", "FAIL", first_line(exc))
        return
    head = ptx_header(kernel.ptx)
    report.add(
        "aot kernel ptx",
        "ok",
        f"Triton compiled the plugin kernel: PTX {head['ptx_isa']} for {head['target']} ({len(kernel.ptx)} bytes)",
    )


def smoke_items(report) -> None:
    """One line per row (or requested row): unknown, skipped with the reason, or its smoke test.
    A requested row that cannot run here is recorded in ``report.failed_requests``."""
    options = report.options
    names = options.requested or list(SPECS)
    for name in [n for n in names if n not in SPECS]:
        report.add(f"smoke {name}", "FAIL", f"unknown back-end; known: {', '.join(SPECS)}")
        report.failed_requests.append(name)
    with tempfile.TemporaryDirectory(prefix="wscnet-doctor-") as tmp, contextlib.redirect_stdout(sys.stderr):
        tester = SmokeTester(Path(tmp), options.model) if options.smoke else None
        for name in [n for n in names if n in SPECS]:
            item = check_row(report, name, tester)
            if item.status == "FAIL" or (item.status == "skipped" and options.requested):
                report.failed_requests.append(name)


def check_row(report, name: str, tester: "SmokeTester | None"):
    spec = SPECS[name]
    reason = skip_reason(spec) or (tester.not_applicable(spec) if tester else None)
    if reason is not None:
        return report.add(f"smoke {name}", "skipped", reason)
    untested = "--no-smoke" if tester is None else tester.untested()
    if untested:
        return report.add(f"smoke {name}", "ok", f"can run here (not smoke-tested: {untested})")
    started = time.perf_counter()
    try:
        detail, ok = tester.run(spec)
    except Exception as exc:  # a broken back-end is a line, not a traceback
        return report.add(f"smoke {name}", "FAIL", first_line(exc))
    return report.add(f"smoke {name}", "ok" if ok else "FAIL", f"{detail} ({time.perf_counter() - started:.1f} s)")


class SmokeTester:
    """Runs one row's smoke test: on a tiny model against PyTorch (torch installed), or on ``model``
    against ONNX Runtime on the CPU (``--model``)."""

    def __init__(self, workdir: Path, model: Path | None) -> None:
        self.workdir, self.model = workdir, model
        self.tiny: dict = {}
        self.reference: dict | None = None

    def untested(self) -> str | None:
        """Why no row can be smoke-tested here, or None."""
        if self.model is None and not torch_installed():
            return "torch builds the tiny model; --model M.onnx tests the runtime back-ends on that file"
        return None

    def not_applicable(self, spec) -> str | None:
        if self.model is not None:
            return self.model_not_applicable(spec)
        if not torch_installed():
            return None
        from .models import Case, not_applicable

        return not_applicable(Case(label="tiny", img_size=SMOKE_SIZE, checkpoint=None), spec)

    def model_not_applicable(self, spec) -> str | None:
        if spec.engine not in ("onnx", "openvino"):
            return f"--model runs the runtime's ONNX back-ends; {spec.name} is not one"
        precision = self.cpu_reference()["precision"]
        if spec.file_precision != precision:
            return f"{spec.name} runs {spec.file_precision} files; {self.model.name} is {precision}"
        return None

    def run(self, spec) -> tuple[str, bool]:
        if self.model is not None:
            return self.run_model_file(spec)
        self.tiny = self.tiny or tiny_model(self.workdir)
        return (smoke_torch if spec.engine == "torch" else smoke_file)(spec, self.tiny, self.workdir)

    def cpu_reference(self) -> dict:
        """The given model's precision, one input image and ONNX Runtime's outputs on the CPU for it."""
        if self.reference is None:
            from runtime.backends import open_backend

            with open_backend(self.model, device="cpu") as cpu:
                size = cpu.metadata.input_size
                batch = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
                self.reference = {"precision": cpu.metadata.precision, "batch": batch, "outputs": cpu.infer(batch)}
        return self.reference

    def run_model_file(self, spec) -> tuple[str, bool]:
        """The given model on ``spec``'s back-end against ONNX Runtime on the CPU, on the same input."""
        from runtime.backends import open_backend

        reference = self.cpu_reference()
        with open_backend(self.model, **spec.open_args()) as backend:
            got = backend.infer(reference["batch"])
            description = backend.description
        diff = float(np.abs(got["probs"] - reference["outputs"]["probs"]).max())
        ok = bool(np.isfinite(got["probs"]).all()) and diff < 0.05
        return f"{self.model.name} on {description}: probs max abs vs ONNX Runtime CPU {diff:.1e}", ok


def tiny_model(workdir: Path) -> dict:
    from wscnet.tiny_model import make_trained_checkpoint, write_image_folder

    ckpt = make_trained_checkpoint(workdir / "tiny.pt", size=SMOKE_SIZE)
    images = write_image_folder(workdir / "images", 6, SMOKE_IMAGES // 6, SMOKE_SIZE, seed=5)
    return {"ckpt": ckpt, "images": images}


def smoke_file(spec, tiny: dict, workdir: Path) -> tuple[str, bool]:
    from export.parity import run_parity

    from .models import Case, model_path

    case = Case(label="tiny", img_size=SMOKE_SIZE, checkpoint=tiny["ckpt"])
    path = model_path(case, spec, 1, workdir, tiny["images"], SMOKE_IMAGES)
    report = run_parity(path, tiny["ckpt"], tiny["images"], n=SMOKE_IMAGES, progress=False)
    detail = (
        f"{path.name}: top-1 agreement {report['top1_agreement'] * 100:.0f} %, "
        f"map correlation {report['map_correlation']:.4f}, {'PASS' if report['passed'] else 'FAIL'}"
    )
    return detail, bool(report["passed"])


def smoke_torch(spec, tiny: dict, workdir: Path) -> tuple[str, bool]:
    """PyTorch on ``spec.device`` against PyTorch on the CPU, on the same images."""
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


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
