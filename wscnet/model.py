"""WSCNet (She et al.): a detection branch that finds sentiment regions and a classification
branch coupled to them. The CAM baseline and every ablation of docs/method.md are configurations."""

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .backbones import ARCHITECTURES, build_backbone
from .choices import COUPLINGS, HEADS
from .pool_map import MAP_WEIGHTS, POOLS, CrossSpatialPoolMap


@dataclass(frozen=True)
class WSCNetConfig:
    arch: str = "resnet101"
    num_classes: int = 8
    k: int = 4
    pool: str = "max"  # Eq. (1) global pooling of each detector map: "max" (paper) | "avg"
    map_weight: str = "softmax"  # Eq. (3) class weights: softmax(v) (paper) | "raw" v / C
    coupling: str = "both"  # Eq. (4): GAP([F ‖ M∘F]) | "local" GAP(M∘F) | "none" GAP(F)
    head: str = "wscnet"  # "cam": GAP + FC on F, class activation map of the predicted class

    def __post_init__(self) -> None:
        checks = {
            "arch": (self.arch, ARCHITECTURES),
            "pool": (self.pool, POOLS),
            "map_weight": (self.map_weight, MAP_WEIGHTS),
            "coupling": (self.coupling, COUPLINGS),
            "head": (self.head, HEADS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {self.num_classes}")
        if self.k < 1:
            raise ValueError(f"k must be at least 1; got {self.k}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "WSCNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@torch.no_grad()
def coupling_scale(global_half: torch.Tensor, coupled_half: torch.Tensor) -> float:
    """Batch mean of the per-image ratio |GAP(M∘F)| / |GAP(F)| (the two N×n halves of Eq. (4)'s
    descriptor): how much the coupled half carries."""
    ratio = coupled_half.float().norm(dim=1) / global_half.float().norm(dim=1).clamp_min(1e-12)
    return ratio.mean().item()


def gradient_share(x: torch.Tensor, share: float) -> torch.Tensor:
    """``x`` with its values unchanged, but only ``share`` of the gradient flowing back through it."""
    if share == 1.0:
        return x
    if share == 0.0:
        return x.detach()
    return x.detach() + share * (x - x.detach())


class WSCNetOutput(NamedTuple):
    logits: torch.Tensor  # N×C, classification branch, Eq. (5) before softmax
    det_logits: torch.Tensor  # N×C, v of Eq. (1) (CAM: the classifier logits)
    sentiment_map: torch.Tensor  # N×h×w, M of Eq. (3) (CAM: map of the predicted class)


class WSCNet(nn.Module):
    def __init__(self, config: WSCNetConfig, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone, n = build_backbone(config.arch, pretrained)
        self.num_features = n
        c = config.num_classes
        if config.head == "wscnet":
            self.detector = nn.Conv2d(n, config.k * c, kernel_size=1)  # F -> F', n -> kC
            nn.init.normal_(self.detector.weight, mean=0.0, std=0.01)
            nn.init.zeros_(self.detector.bias)
            self.pool_map = CrossSpatialPoolMap(config.k, config.pool, config.map_weight)
        # Training only (--detach-coupled-map): L_cls does not reshape M; eval and export never detach.
        self.training_detach_map = False
        # Training only (--coupled-feature-grad): share of L_cls's gradient through M∘F that reaches F
        self.training_coupled_feature_grad = 1.0
        # Training only (--coupled-feature-brake P): that share / s^P where GAP(M∘F) is s > 1 × GAP(F),
        # not below --coupled-feature-floor
        self.training_coupled_feature_brake = 0.0
        self.training_coupled_feature_floor = 0.0
        self.last_coupled_feature_share = 1.0
        coupled = config.head == "wscnet" and config.coupling == "both"
        self.classifier = nn.Linear(2 * n if coupled else n, c)

    def forward(self, x: torch.Tensor) -> WSCNetOutput:
        features = self.backbone(x)  # N×n×h×w
        if self.config.head == "cam":
            return self._forward_cam(features)
        v, sentiment_map = self.pool_map(self.detector(features))
        logits = self.classifier(self.coupled_descriptor(features, sentiment_map))
        return WSCNetOutput(logits, v, sentiment_map)

    def coupled_descriptor(self, features: torch.Tensor, sentiment_map: torch.Tensor) -> torch.Tensor:
        """Eq. (4): d = GAP([F ‖ U]) with U_i = M ∘ F_i (or one half of it, per ``coupling``)."""
        if self.config.coupling == "none":
            return features.mean(dim=(2, 3))
        if self.training and self.training_detach_map:
            sentiment_map = sentiment_map.detach()  # M is shaped by the detection loss alone
        share = self._coupled_feature_share(features, sentiment_map) if self.training else 1.0
        local = (sentiment_map.unsqueeze(1) * gradient_share(features, share)).mean(dim=(2, 3))  # N×n
        if self.config.coupling == "local":
            return local
        return torch.cat([features.mean(dim=(2, 3)), local], dim=1)  # N×2n

    @torch.no_grad()
    def _coupled_feature_share(self, features: torch.Tensor, sentiment_map: torch.Tensor) -> float:
        """The training share of L_cls's gradient through M∘F into F: ``training_coupled_feature_grad``,
        divided by s^P where the batch's |GAP(M∘F)| is on average s > 1 times |GAP(F)| (the gradient
        into F through M∘F grows with M), but not below ``training_coupled_feature_floor``."""
        share = self.training_coupled_feature_grad
        if self.training_coupled_feature_brake > 0:
            local = (sentiment_map.unsqueeze(1) * features).mean(dim=(2, 3))
            scale = coupling_scale(features.mean(dim=(2, 3)), local)
            braked = share / max(1.0, scale) ** self.training_coupled_feature_brake
            share = max(braked, min(share, self.training_coupled_feature_floor))
        self.last_coupled_feature_share = share
        return share

    @torch.no_grad()
    def logit_half_norms(self, descriptor: torch.Tensor) -> tuple[float, float]:
        """Batch-mean norms of the logits each half of Eq. (4)'s descriptor contributes:
        (from GAP(F), from GAP(M∘F)); the second is 0 without a coupled half."""
        n = self.num_features
        d, weight = descriptor.detach().float(), self.classifier.weight.detach().float()
        glob = (d[:, :n] @ weight[:, :n].T).norm(dim=1).mean().item()
        if d.shape[1] == n:
            return glob, 0.0
        return glob, (d[:, n:] @ weight[:, n:].T).norm(dim=1).mean().item()

    def _forward_cam(self, features: torch.Tensor) -> WSCNetOutput:
        logits = self.classifier(features.mean(dim=(2, 3)))
        class_weights = self.classifier.weight[logits.argmax(dim=1)]  # N×n
        cam = torch.einsum("nj,njhw->nhw", class_weights, features)
        return WSCNetOutput(logits, logits, cam)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-layer parameters): the paper trains them at 1e-3 and 1e-2."""
        backbone = list(self.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        new = [p for p in self.parameters() if id(p) not in backbone_ids]
        return backbone, new


def deploy_outputs(out: WSCNetOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exported model's three outputs: probs (N×C), det_scores (N×C), sentiment_map (N×1×h×w)."""
    probs = torch.softmax(out.logits, dim=1)
    det_scores = torch.softmax(out.det_logits, dim=1)
    return probs, det_scores, out.sentiment_map.unsqueeze(1)
