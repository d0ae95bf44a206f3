"""PyTorch eager as one more back-end: the same ``infer`` / ``close`` as the runtime's Backends.

On a GPU it also keeps ``last_device_ms``, the GPU compute time of the last call measured with
CUDA events around the forward pass alone (no host↔device copies), as trtexec's "GPU Compute Time".
"""

from pathlib import Path

import numpy as np
import torch

from runtime.backends.base import OUTPUT_NAMES, Backend
from wscnet.checkpoint import load_checkpoint
from wscnet.model import deploy_outputs


class TorchRunner(Backend):
    name = "torch-eager"

    def __init__(self, device: str = "cpu", threads: int = 0) -> None:
        self.device = torch.device(device)
        self.threads = threads
        self.model = None
        self.checkpoint: dict | None = None
        self.last_device_ms: float | None = None

    def load(self, path: str | Path) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model, self.checkpoint = load_checkpoint(path, device=self.device)

    @property
    def description(self) -> str:
        return f"torch-eager[{self.device.type}]"

    @torch.inference_mode()
    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(batch).to(self.device)
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            outputs = deploy_outputs(self.model(x))
            end.record()
            results = {name: t.cpu().numpy() for name, t in zip(OUTPUT_NAMES, outputs)}  # syncs
            self.last_device_ms = start.elapsed_time(end)
            return results
        outputs = deploy_outputs(self.model(x))
        return {name: t.numpy() for name, t in zip(OUTPUT_NAMES, outputs)}

    def close(self) -> None:
        self.model = None
