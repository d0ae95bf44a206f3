"""Arithmetic work of one image through the model, counted once per (model, image size)."""

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_flops(model: torch.nn.Module, img_size: int) -> int:
    """FLOPs of one forward pass on a 1×3×S×S image (a multiply-add counts as two).

    FlopCounterMode counts the matrix products and convolutions, which are nearly all of the
    work; element-wise ops (ReLU, batch norm, pooling) are left out, as in the usual GFLOPs tables.
    """
    x = torch.zeros(1, 3, img_size, img_size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(x)
    return int(counter.get_total_flops())
