"""Self-describing checkpoints: everything needed to rebuild, evaluate or export the model.

Layout (a plain dict of tensors, numbers, strings, lists and dicts, so ``weights_only=True``
loads it)::

    format, format_version          "wscnet-edge-checkpoint", 1
    model_config                    WSCNetConfig.to_dict(): arch, num_classes, k, pool, ...
    class_names                     list[str], index = class id
    input_size                      int, square side the model was trained at
    mean, std                       list[float] (RGB, inputs scaled to [0, 1] first)
    input_contract                  runtime.contract.InputContract.to_dict(): geometry, size,
                                    interpolation, colour order, mean, std (absent before v1.1:
                                    read with InputContract.fallback)
    epoch, metrics                  int (1-based, completed), dict[str, float]
    versions                        wscnet, torch, torchvision, python
    state_dict                      model weights
    data_source                     optional: the data set trained on (data, layout, fold,
                                    split_seed, csv_file), so calibration takes its train split
                                    and parity its test split
    train_state                     optional: optimizer/scheduler/scaler state, rng, args (resume)
    batchnorm                       optional (written by training): momentum, precise_bn_images,
                                    recalibrated_images (0: running averages as trained)
"""

import platform
from pathlib import Path
from typing import Any

import torch
import torchvision

from runtime.contract import IMAGENET_MEAN, IMAGENET_STD, InputContract

from . import __version__
from .atomic import atomic_write
from .checkpoint_path import WANTS_CHECKPOINT, check_checkpoint_path
from .errors import UserError
from .model import WSCNet, WSCNetConfig

FORMAT = "wscnet-edge-checkpoint"
FORMAT_VERSION = 1
DATA_SOURCE_KEYS = ("data", "layout", "fold", "split_seed", "csv_file")
REQUIRED_KEYS = ("model_config", "class_names", "input_size", "mean", "std", "state_dict")


def library_versions() -> dict[str, str]:
    return {
        "wscnet": __version__,
        "torch": str(torch.__version__),  # TorchVersion is not allowed by weights_only loading
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def make_checkpoint(
    model: WSCNet,
    *,
    class_names: list[str],
    input_size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    epoch: int = 0,
    metrics: dict[str, float] | None = None,
    train_state: dict[str, Any] | None = None,
    contract: InputContract | None = None,
    data_source: dict[str, Any] | None = None,
    batchnorm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``contract`` defaults to the training default (squash) at ``input_size`` with ``mean``/``std``."""
    contract = contract or InputContract(input_size, tuple(mean), tuple(std))
    if len(class_names) != model.config.num_classes:
        raise ValueError(f"{len(class_names)} class names for {model.config.num_classes} classes")
    bare = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": bare.config.to_dict(),
        "class_names": list(class_names),
        "input_size": contract.input_size,
        "mean": list(contract.mean),
        "std": list(contract.std),
        "input_contract": contract.to_dict(),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "versions": library_versions(),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
    }
    if data_source is not None:
        ckpt["data_source"] = {k: data_source.get(k) for k in DATA_SOURCE_KEYS}
    if train_state is not None:
        ckpt["train_state"] = train_state
    if batchnorm is not None:
        ckpt["batchnorm"] = dict(batchnorm)
    return ckpt


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict; any problem is one UserError line naming the file."""
    path = check_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({_load_problem(path, exc)}); {WANTS_CHECKPOINT}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a wscnet-edge checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
            f"version of wscnet understands ({FORMAT_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return ckpt


def _load_problem(path: Path, exc: Exception) -> str:
    """Why torch.load failed, in words that fit one line (torch's own text runs for a page)."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        return "not a file torch.save wrote"
    if "weights_only" in str(exc) or "Weights only" in str(exc):
        return "it holds objects other than tensors and plain values"
    return f"damaged or truncated: {type(exc).__name__}"


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> WSCNet:
    try:
        config = WSCNetConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad model config: {exc}") from None
    if len(ckpt["class_names"]) != config.num_classes:
        raise UserError(
            f"{path}: {len(ckpt['class_names'])} class names but the model has {config.num_classes} classes"
        )
    model = WSCNet(config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise UserError(f"{path}: weights do not match its config ({detail[:160]})") from None
    return model


def checkpoint_contract(ckpt: dict[str, Any], path: str | Path = "<checkpoint>") -> InputContract:
    """The checkpoint's input contract; the documented fallback for checkpoints without one."""
    if "input_contract" not in ckpt:
        return InputContract.fallback(int(ckpt["input_size"]), ckpt["mean"], ckpt["std"])
    try:
        return InputContract.from_dict(dict(ckpt["input_contract"]))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad input contract: {exc}") from None


def recorded_data_source(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """Where the checkpoint's training data is: its ``data_source``, else its train_state args."""
    recorded = ckpt.get("data_source") or ((ckpt.get("train_state") or {}).get("args") or {})
    if not recorded.get("data"):
        return None
    return {k: recorded.get(k) for k in DATA_SOURCE_KEYS}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[WSCNet, dict[str, Any]]:
    """(model in eval mode on ``device``, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    return model, ckpt
