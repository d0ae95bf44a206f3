"""Cross-spatial pooling, Eq. (1), and the sentiment map, Eq. (3), as one parameter-free module.

This is the piece the exporter replaces by a single fused node (``CrossSpatialPoolMap``), so it
is kept as a module of its own with a functional core that both sides share.
"""

import torch
from torch import nn

from .choices import MAP_WEIGHTS, POOLS  # noqa: F401  (re-exported)


def cross_spatial_pool_map(
    fprime: torch.Tensor, k: int, pool: str = "max", map_weight: str = "softmax", max_share: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """F' (N×kC×h×w) -> (v: N×C, M: N×h×w).

    Channels ``c*k .. c*k+k-1`` of F' are the k maps f_{c,i} of class c.
    v_c = (1/k) Σ_i G(f_{c,i}) with G global max (or average) pooling.
    M = Σ_c w_c (1/k) Σ_i f_{c,i}, with w = softmax(v) or, as in the official code, v / C.
    ``max_share`` < 1 (training warm-up only) blends GMP with GAP: share·GMP + (1 - share)·GAP.
    """
    n, kc, h, w = fprime.shape
    groups = fprime.reshape(n, kc // k, k, h, w)  # N×C×k×h×w
    if pool == "max":
        per_map = groups.amax(dim=(3, 4))  # N×C×k
        if max_share < 1.0:
            per_map = max_share * per_map + (1.0 - max_share) * groups.mean(dim=(3, 4))
    else:
        per_map = groups.mean(dim=(3, 4))
    v = per_map.mean(dim=2)  # N×C
    class_maps = groups.mean(dim=2)  # N×C×h×w
    if map_weight == "softmax":
        weights = torch.softmax(v, dim=1)
    else:
        weights = v / v.shape[1]
    sentiment_map = (weights[:, :, None, None] * class_maps).sum(dim=1)  # N×h×w
    return v, sentiment_map


class CrossSpatialPoolMap(nn.Module):
    def __init__(self, k: int, pool: str = "max", map_weight: str = "softmax") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if map_weight not in MAP_WEIGHTS:
            raise ValueError(f"map_weight must be one of {MAP_WEIGHTS}, got {map_weight!r}")
        self.k = k
        self.pool = pool
        self.map_weight = map_weight
        self.training_max_share = 1.0  # set by a warm-up schedule; eval mode always uses GMP

    def forward(self, fprime: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        share = self.training_max_share if self.training else 1.0
        return cross_spatial_pool_map(fprime, self.k, self.pool, self.map_weight, share)

    def extra_repr(self) -> str:
        return f"k={self.k}, pool={self.pool}, map_weight={self.map_weight}"
