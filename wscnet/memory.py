"""Will a job fit in memory? Checked before it starts, so it is not killed halfway.

A job estimates the memory it will add to this process (from the model's size and its input
shape) and calls ``require``; when this process's resident memory plus that estimate exceeds
what it can have (this process's RSS + the system's MemAvailable, within a cgroup limit), the job
stops with one line: the figure, and the setting that would fit. ``WSCNET_MEMORY_MB`` caps
it further: ``WSCNET_MEMORY_MB=7000 python cli.py export ...`` checks a command against an
8 GB Jetson's budget on a larger machine.
"""

import os
from pathlib import Path

from .errors import UserError

BUDGET_ENV = "WSCNET_MEMORY_MB"
MB = 2**20
GB = 2**30


def _proc_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def current_rss_bytes(pid: int | str = "self") -> int:
    """Resident memory now of this process (or of process ``pid``)."""
    return _proc_kb(f"/proc/{pid}/status", "VmRSS") or 0


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit, if one is set."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        used = int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def memory_limit_bytes() -> int:
    """What this process can grow to: its RSS + available memory, capped by cgroup and budget."""
    rss = current_rss_bytes()
    room = _proc_kb("/proc/meminfo", "MemAvailable")
    if room is None:
        room = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cgroup = _cgroup_room()
    limit = rss + (room if cgroup is None else min(room, cgroup))
    budget = os.environ.get(BUDGET_ENV)
    if budget:
        try:
            limit = min(limit, int(float(budget) * MB))
        except ValueError:
            raise UserError(f"{BUDGET_ENV} must be a number of megabytes; got {budget!r}") from None
    return limit


def fits(extra_bytes: float) -> bool:
    return current_rss_bytes() + extra_bytes <= memory_limit_bytes()


def require(job: str, extra_bytes: float, fix: str = "") -> None:
    """Stop with one line unless ``extra_bytes`` more than this process holds now will fit."""
    need, limit = current_rss_bytes() + extra_bytes, memory_limit_bytes()
    if need > limit:
        hint = f"; {fix}" if fix else ""
        raise UserError(f"{job} needs about {need / GB:.1f} GB of memory, {limit / GB:.1f} GB available{hint}")


def largest_fitting(extra_for, candidates) -> object | None:
    """The first of ``candidates`` (best first) whose ``extra_for(candidate)`` fits, else None."""
    for candidate in candidates:
        if fits(extra_for(candidate)):
            return candidate
    return None


# Peak memory of one image's forward pass (inference, torch or ONNX Runtime) in units of its
# largest activation: measured 3.9x for resnet101 at 448 (torch and ONNX Runtime, bench rows at
# batch 1 and 8), the live input, output and residual of a block plus the allocator's slack.
FORWARD_PER_LARGEST = 4


def largest_activation_bytes(model_config: dict, size: int) -> int:
    """float32 bytes of the largest tensor one S×S image makes in WSCNet (shapes only, no compute)."""
    import torch

    from .model import WSCNet, WSCNetConfig

    largest = 0

    def record(_module, _inputs, output):
        nonlocal largest
        for value in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(value, torch.Tensor):
                largest = max(largest, value.numel())

    with torch.device("meta"):
        model = WSCNet(WSCNetConfig(**model_config)).eval()
        for module in model.modules():
            if not any(True for _ in module.children()):
                module.register_forward_hook(record)
        with torch.no_grad():
            model(torch.empty(1, 3, size, size))
    return largest * 4


def forward_bytes_per_image(model_config: dict, size: int) -> int:
    return FORWARD_PER_LARGEST * largest_activation_bytes(model_config, size)


def device_room_bytes() -> int | None:
    """Free memory of the current CUDA device (a Jetson's is the shared system memory), else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0])
    except Exception:  # no usable CUDA: the caller checks host memory instead
        return None
    return None


def require_on_device(job: str, need_bytes: float, fix: str = "") -> None:
    """``require`` for memory a GPU job allocates on the device (host memory without CUDA)."""
    room = device_room_bytes()
    if room is None:
        require(job, need_bytes, fix)
    elif need_bytes > room:
        hint = f"; {fix}" if fix else ""
        raise UserError(f"{job} needs about {need_bytes / GB:.1f} GB of GPU memory, {room / GB:.1f} GB free{hint}")
