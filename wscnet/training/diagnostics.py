"""Why a run learns late: every ``diagnostics_every`` steps, one line of ``diagnostics.jsonl``.

Per step it records, for the batch at hand:

- ``grad_feat_cls`` / ``grad_feat_det``: norm of dL_cls/dF and dL_dec/dF at the backbone's
  output F, i.e. how hard each branch pushes the backbone (per image, summed over the batch);
- ``grad_backbone`` / ``grad_detector`` / ``grad_classifier``: parameter-gradient norms of the
  joint loss before any clipping, and ``clipped``, the factor a ``--grad-clip`` applies;
- ``entropy_v``: entropy of softmax(v) over ln C (1 = uniform, the Eq. (3) weights say nothing);
- ``map_contrast``: (max - mean) / (|mean| + std) of M per image, batch mean;
- ``coupling_scale``: |GAP(M∘F)| / |GAP(F)|, how much the coupled half of Eq. (4) carries;
- ``logit_global`` / ``logit_coupled``: norm of the classifier's logits from each half of Eq. (4)
  (W_F·GAP(F) and W_U·GAP(M∘F), bias left out), batch mean: which half decides the answer
  (CAM: ``logit_global`` alone).
"""

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atomic import atomic_write_text
from ..model import coupling_scale


class Diagnostics:
    def __init__(self, model, out: Path, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1; got {every}")
        self.model, self.path, self.every = model, Path(out) / "diagnostics.jsonl", every
        self._features: torch.Tensor | None = None
        model.backbone.register_forward_hook(self._keep_features)
        self.rows: list[dict] = []

    def _keep_features(self, _module, _inputs, output: torch.Tensor) -> None:
        self._features = output if output.requires_grad else None

    def wanted(self, step: int) -> bool:
        return step % self.every == 0

    def before_backward(self, out, labels: torch.Tensor) -> dict:
        """Head-only gradients of each loss at F (cheap: nothing below F is back-propagated)."""
        row: dict = {}
        losses = {"cls": F.cross_entropy(out.logits, labels)}
        if out.logits is not out.det_logits:
            losses["det"] = F.cross_entropy(out.det_logits, labels)
        if self._features is not None:
            for name, loss in losses.items():
                (grad,) = torch.autograd.grad(loss, self._features, retain_graph=True, allow_unused=True)
                row[f"grad_feat_{name}"] = 0.0 if grad is None else grad.norm().item() * grad.shape[0]
        if out.logits is not out.det_logits:  # WSCNet (CAM has no detection branch)
            row.update(_map_statistics(out, self._features))
        if self._features is not None:
            row.update(logit_halves(self.model, self._features, out.sentiment_map))
        return row

    def after_backward(self, row: dict, step: int, epoch: int, clip: float, loss_scale: float = 1.0) -> None:
        """Parameter-gradient norms before clipping (divided by the AMP loss scale, if any)."""
        groups = {"backbone": self.model.backbone.parameters(), "classifier": self.model.classifier.parameters()}
        if hasattr(self.model, "detector"):
            groups["detector"] = self.model.detector.parameters()
        total = 0.0
        for name, params in groups.items():
            norm = _grad_norm(params) / loss_scale
            row[f"grad_{name}"] = norm
            total += norm**2
        total = math.sqrt(total)
        row["grad_total"] = total
        row["clipped"] = min(1.0, clip / total) if clip > 0 and total > 0 else 1.0
        share = getattr(getattr(self.model, "pool_map", None), "training_max_share", None)
        if share is not None:
            row["max_share"] = share
        self.rows.append({"epoch": epoch + 1, "step": step, **row})

    def flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))


@torch.no_grad()
def _map_statistics(out, features: torch.Tensor | None) -> dict:
    c = out.det_logits.shape[1]
    p = torch.softmax(out.det_logits.float(), dim=1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(c)
    m = out.sentiment_map.float().flatten(1)
    mean, std = m.mean(1), m.std(1)
    contrast = (m.amax(1) - mean) / (mean.abs() + std + 1e-12)
    row = {
        "entropy_v": entropy.mean().item(),
        "map_contrast": contrast.mean().item(),
        "map_mean": mean.mean().item(),
        "map_std": std.mean().item(),
    }
    if features is not None:
        f = features.detach().float()
        local = (out.sentiment_map.detach().float().unsqueeze(1) * f).mean(dim=(2, 3))
        row["coupling_scale"] = coupling_scale(f.mean(dim=(2, 3)), local)
    return row


@torch.no_grad()
def logit_halves(model, features: torch.Tensor, sentiment_map: torch.Tensor) -> dict:
    """Norms of the two halves' contributions to the classification logits (CAM: its one half)."""
    if model.config.head == "cam":
        return {"logit_global": model.logit_half_norms(features.mean(dim=(2, 3)))[0]}
    if model.config.coupling != "both":
        return {}
    glob, coupled = model.logit_half_norms(model.coupled_descriptor(features, sentiment_map))
    return {"logit_global": glob, "logit_coupled": coupled}


def _grad_norm(params) -> float:
    squares = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
    return math.sqrt(sum(s.item() for s in squares)) if squares else 0.0
