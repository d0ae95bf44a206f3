"""Exact resumption: everything besides the weights that decides what the next epoch does."""

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import read_checkpoint
from ..errors import UserError
from .options import TrainOptions


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed every generator from (seed, epoch, rank) so an epoch's shuffling and augmentation
    depend on nothing that happened before it: a resumed run replays it bit for bit."""
    value = (seed * 1_000_003 + epoch * 1_009 + rank) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def rng_state() -> dict[str, Any]:
    state = {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np.random.get_state()[1].copy()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def train_state(
    options: TrainOptions, epoch: int, optimizer, scheduler, scaler, best: dict, history: list[dict]
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "rng": rng_state(),
        "args": options.to_dict(),
        "best": dict(best),
        "history": list(history),
    }


def load_resume_state(out: Path, options: TrainOptions) -> dict[str, Any] | None:
    """The checkpoint of the run to continue, after checking it is the same experiment."""
    path = out / "last.pt"
    if not path.is_file():
        raise UserError(f"{path}: nothing to resume (no last.pt in {out})")
    ckpt = read_checkpoint(path)
    state = ckpt.get("train_state")
    if not isinstance(state, dict):
        raise UserError(f"{path}: has no train_state; it cannot be resumed")
    saved = state.get("args", {})
    changed = [
        f"{name} ({saved.get(name)!r} -> {getattr(options, name)!r})"
        for name in TrainOptions.FIXED_ON_RESUME
        if name in saved and _norm(saved[name]) != _norm(getattr(options, name))
    ]
    if changed:
        raise UserError(f"{path}: --resume with different settings: {', '.join(changed)}")
    return ckpt


def _norm(value: Any) -> Any:
    return str(Path(value).resolve()) if isinstance(value, str) and ("/" in value or Path(value).exists()) else value
