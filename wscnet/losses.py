"""Joint loss, Eq. (7): L = L_dec (Eq. 2, on softmax(v)) + L_cls (Eq. 6).

``det_label_smoothing`` (training only, 0 = the paper) smooths L_dec's targets: the pooled scores v
then stop at a finite margin, so the detector maps, and with them M, stop growing once they rank
the classes (see ``TrainOptions.det_label_smoothing``)."""

import torch
import torch.nn.functional as F

from .model import WSCNetOutput


def wscnet_loss(
    out: WSCNetOutput,
    target: torch.Tensor,
    head: str = "wscnet",
    det_weight: float = 1.0,
    det_label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    cls_loss = F.cross_entropy(out.logits, target)
    if head == "cam":
        return cls_loss, {"loss_cls": cls_loss.item()}
    det_loss = F.cross_entropy(out.det_logits, target, label_smoothing=det_label_smoothing)
    total = cls_loss + det_weight * det_loss
    return total, {"loss_cls": cls_loss.item(), "loss_det": det_loss.item()}
