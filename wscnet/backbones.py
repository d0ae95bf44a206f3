"""Torchvision classification networks cut to their fully convolutional part (stride 32)."""

from pathlib import Path

import torch
from torch import nn
from torchvision import models

from .choices import ARCHITECTURES, MOBILENETS, RESNETS  # noqa: F401  (re-exported)
from .errors import UserError


def build_backbone(arch: str, pretrained: str | Path | None = None) -> tuple[nn.Module, int]:
    """Return (feature extractor, number of output channels n).

    The extractor maps N×3×H×W to N×n×H/32×W/32. ``pretrained`` is a torchvision ImageNet
    state dict on local disk (``.pth``); nothing is ever downloaded.
    """
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    full = getattr(models, arch)(weights=None)
    if pretrained is not None:
        load_pretrained(full, Path(pretrained), arch)
    if arch in RESNETS:
        features = nn.Sequential(
            full.conv1,
            full.bn1,
            full.relu,
            full.maxpool,
            full.layer1,
            full.layer2,
            full.layer3,
            full.layer4,
        )
        return features, full.fc.in_features
    features = full.features
    return features, features[-1].out_channels


def zero_init_residual(backbone: nn.Module) -> int:
    """Set the last BatchNorm scale of every ResNet residual block to 0, so each block starts as
    the identity and a deep network trains from scratch like a shallow one (Goyal et al., 2017).
    Returns the number of blocks changed (0 for a backbone without residual blocks)."""
    last_norms = [
        block.bn3 if isinstance(block, models.resnet.Bottleneck) else block.bn2
        for block in backbone.modules()
        if isinstance(block, (models.resnet.Bottleneck, models.resnet.BasicBlock))
    ]
    for norm in last_norms:
        nn.init.zeros_(norm.weight)
    return len(last_norms)


def load_pretrained(model: nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise UserError(f"{path}: pretrained weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a state dict file"
        raise UserError(f"{path}: not a readable torch state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise UserError(f"{path}: does not match torchvision {arch}: {first}") from None
    if missing or unexpected:
        raise UserError(
            f"{path}: does not match torchvision {arch} "
            f"({len(missing)} missing keys, {len(unexpected)} unexpected keys, e.g. "
            f"{(missing or unexpected)[0]!r})"
        )
