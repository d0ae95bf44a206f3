"""The GPU acceptance run, prepared for a lent machine (H200: torch CUDA, Triton, CuPy; no TensorRT,
no onnxruntime-gpu). One call, under 8 minutes; without CUDA it says so and exits 0.

    python cli.py job gpu-acceptance --out $OUT/gpu     # writes gpu_acceptance.json + bench/

1. AMP training on CUDA: one timed mixed-precision step of the paper's model (resnet101 at 448,
   CUDA events), then the real ``train`` command for one epoch on a small synthetic set.
2. The fused op's Triton kernel against PyTorch on CUDA (several shapes, fp32/fp16, CUDA-event
   timing of both), and the AOT path without TensorRT: the kernel compiled to PTX for this GPU,
   loaded by CuPy and launched the way TensorRT launches an AOT plugin (our five arguments, in a
   child process in case the driver objects to Triton's two trailing scratch parameters) and with
   all seven.
3. The torch-cuda rows of ``bench`` (GPU time from CUDA events next to host latency).
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_ARGS = [
    "resnet18@224",
    "resnet101@448",
    "--backends",
    "torch-cuda",
    "--batch",
    "1,8",
    "--warmup",
    "5",
    "--duration",
    "3",
    "--agreement-images",
    "16",
]


def cuda_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    return None


class _EventTimed:
    """``fn`` as a runner of ``measure.time_calls`` (the one timing loop): CUDA events around each call."""

    def __init__(self, fn) -> None:
        self.fn, self.last_device_ms = fn, None

    def infer(self, _batch) -> None:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.fn()
        end.record()
        end.synchronize()
        self.last_device_ms = start.elapsed_time(end)


def _cuda_ms(fn, repeats: int = 20) -> float:
    """Median GPU milliseconds of ``fn`` by CUDA events, after two warm-up calls."""
    from benchmarks.measure import summarise, time_calls

    _, device = time_calls(_EventTimed(fn), None, warmup=2, iters=repeats)
    return summarise(device)["median"]


def amp_step(arch: str = "resnet101", size: int = 448, batch: int = 8) -> dict:
    """One AMP training step of WSCNet on CUDA: loss finite, GPU step time."""
    import torch

    from wscnet.losses import wscnet_loss
    from wscnet.model import WSCNet, WSCNetConfig

    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch=arch, num_classes=8)).cuda().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(batch, 3, size, size, device="cuda")
    y = torch.randint(0, 8, (batch,), device="cuda")
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss, _ = wscnet_loss(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))

    ms = _cuda_ms(step, repeats=10)
    return {
        "arch": arch,
        "size": size,
        "batch": batch,
        "step_ms": round(ms, 2),
        "images_per_s": round(batch / ms * 1000, 1),
        "losses_finite": all(math.isfinite(v) for v in losses),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def train_command(out: Path) -> dict:
    """The real ``train`` command: one epoch, CUDA, AMP, on a small synthetic set."""
    data, run = out / "synth", out / "train"
    started = time.perf_counter()
    _cli(["synth", str(data), "--n-per-class", "24", "--size", "160"], 300)
    result = _cli(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--arch",
            "resnet18",
            "--img-size",
            "160",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--device",
            "cuda",
            "--amp",
            "--workers",
            "4",
        ],
        300,
    )
    return {
        "returncode": result.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "checkpoint": (run / "best.pt").is_file(),
        "stderr_tail": result.stderr[-600:],
    }


def kernel_checks() -> dict:
    """The Triton kernel against PyTorch on CUDA: max errors and GPU times."""
    import torch

    from export.triton_kernel import cross_spatial_pool_map_triton
    from wscnet.pool_map import cross_spatial_pool_map

    rows = []
    for shape, k in (((8, 32, 14, 14), 4), ((3, 24, 7, 9), 3), ((16, 32, 28, 28), 4)):
        for dtype in (torch.float32, torch.float16):
            f = (torch.randn(*shape, device="cuda") * 3).to(dtype)
            v, m = cross_spatial_pool_map_triton(f, k, "max", "softmax")
            rv, rm = cross_spatial_pool_map(f.float(), k, "max", "softmax")
            rows.append(
                {
                    "shape": list(shape),
                    "k": k,
                    "dtype": str(dtype).split(".")[-1],
                    "v_max_abs": float((v.float() - rv).abs().max()),
                    "m_max_abs": float((m.float() - rm).abs().max()),
                    "triton_ms": round(_cuda_ms(lambda: cross_spatial_pool_map_triton(f, k, "max", "softmax")), 4),
                    "torch_ms": round(_cuda_ms(lambda: cross_spatial_pool_map(f, k, "max", "softmax")), 4),
                }
            )
    return {"rows": rows, "all_close": all(r["v_max_abs"] < 2e-2 and r["m_max_abs"] < 2e-1 for r in rows)}


AOT_CHILD = """
import json, sys, numpy as np, cupy as cp, torch
from export.trt_plugin import compile_ptx
from wscnet.pool_map import cross_spatial_pool_map
n_args, ptx_path = int(sys.argv[1]), sys.argv[2]
major, minor = torch.cuda.get_device_capability(0)
kernel = compile_ptx((32, 14, 14), 4, "max", "softmax", "float32", (major, minor))
open(ptx_path, "w").write(kernel.ptx)
function = cp.RawModule(path=ptx_path).get_function(kernel.name)
f = cp.asarray(np.random.default_rng(0).standard_normal((8, 32, 14, 14), dtype=np.float32) * 3)
v, m = cp.zeros((8, 8), cp.float32), cp.zeros((8, 14, 14), cp.float32)
args = [f, np.int32(kernel.channels), np.int32(kernel.hw), v, m] + [np.uint64(0)] * (n_args - 5)
function((8,), (kernel.threads,), tuple(args), shared_mem=kernel.shared_bytes)
cp.cuda.Device().synchronize()
rv, rm = cross_spatial_pool_map(torch.as_tensor(cp.asnumpy(f)), 4, "max", "softmax")
print(json.dumps({"v_max_abs": float(np.abs(cp.asnumpy(v) - rv.numpy()).max()),
                  "m_max_abs": float(np.abs(cp.asnumpy(m) - rm.numpy()).max()), "threads": kernel.threads}))
"""


def aot_ptx_checks(out: Path) -> dict:
    """The AOT kernel's PTX launched by CuPy: with TensorRT's five arguments and with all seven."""
    results = {}
    for n_args in (5, 7):
        run = subprocess.run(
            [sys.executable, "-c", AOT_CHILD, str(n_args), str(out / f"aot_{n_args}.ptx")],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        lines = run.stdout.strip().splitlines()
        results[f"{n_args}_args"] = (
            json.loads(lines[-1])
            if run.returncode == 0 and lines
            else {"returncode": run.returncode, "stderr_tail": run.stderr[-600:]}
        )
    return results


def bench_rows(out: Path) -> dict:
    result = _cli(["bench", *BENCH_ARGS, "--out", str(out / "bench")], 360)
    table = out / "bench" / "bench.md"
    return {
        "returncode": result.returncode,
        "markdown": table.read_text() if table.is_file() else result.stderr[-1500:],
    }


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
    )


STEPS = (  # name, function of the output folder; each step's failure is recorded, the run goes on
    ("amp_step", lambda out: amp_step()),
    ("train_command", train_command),
    ("kernel", lambda out: kernel_checks()),
    ("aot_ptx_cupy", aot_ptx_checks),
    ("bench_torch_cuda", bench_rows),
)


def run(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    reason = cuda_reason()
    if reason is not None:
        return {"skipped": reason}
    import torch

    report: dict = {
        "gpu": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    for name, step in STEPS:
        started = time.perf_counter()
        try:
            report[name] = step(out)
        except Exception as exc:  # one broken step must not hide the others' figures
            report[name] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        report[name + "_seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {json.dumps(report[name])[:400]}", flush=True)
    return report


def gpu_acceptance(out: Path) -> dict:
    """``python cli.py job gpu-acceptance``: run, write ``gpu_acceptance.json``, print the bench table
    (or one line saying why it was skipped)."""
    report = run(out)
    (out / "gpu_acceptance.json").write_text(json.dumps(report, indent=2) + "\n")
    if "skipped" in report:
        print(f"gpu acceptance skipped: {report['skipped']}")
    else:
        print(report.get("bench_torch_cuda", {}).get("markdown", ""))
    return report
