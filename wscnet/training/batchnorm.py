"""BatchNorm running statistics that belong to the weights a model ends with.

In eval mode a BatchNorm layer normalises with its running mean and variance, an exponential
average of the batch statistics seen while the weights kept changing. From scratch at a high
learning rate that average trails the final weights; with torchvision's MobileNetV3 momentum
(0.01, a window of ~100 steps) it is far off after a short run and the eval-mode model predicts
one class. ``recalibrate_batchnorm`` replaces the running statistics with the exact average over
a few hundred training images run through the final weights (precise BN).
"""

from collections.abc import Iterable

import torch
from torch import nn

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, BATCHNORM_TYPES) and m.track_running_stats]


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> None:
    """Every BatchNorm layer's running-average momentum (weight of the newest batch)."""
    for layer in batchnorm_layers(model):
        layer.momentum = momentum


def batchnorm_momentum(model: nn.Module) -> float | None:
    """The momentum the model's BatchNorm layers share, None if they have none or differ."""
    values = {layer.momentum for layer in batchnorm_layers(model)}
    return values.pop() if len(values) == 1 else None


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    max_images: int | None = None,
    device: torch.device | str | None = None,
) -> int:
    """Re-estimate every BatchNorm layer's running statistics from ``batches`` (precise BN).

    Runs the batches forward in train mode without gradients; each layer's running mean and
    variance become the plain average of the batch statistics (momentum None), the weights are
    untouched. Momentum and train/eval mode are restored afterwards. Stops after ``max_images``.
    Returns the number of images used (0: no BatchNorm layer or no batch, statistics unchanged).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved_state = [(layer.running_mean.clone(), layer.running_var.clone()) for layer in layers]
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    model.train()
    seen = 0
    try:
        for images in batches:
            if max_images is not None and seen >= max_images:
                break
            if max_images is not None:
                images = images[: max_images - seen]
            if len(images) < 2:  # a single image has no batch variance worth keeping
                continue
            model(images.to(device) if device is not None else images)
            seen += len(images)
    finally:
        for layer, momentum, (mean, var) in zip(layers, momenta, saved_state):
            layer.momentum = momentum
            if seen == 0:
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
        model.train(was_training)
    return seen


FROM_SCRATCH_MOMENTUM = 0.1
FROM_SCRATCH_PRECISE_BN_IMAGES = 512


def batchnorm_plan(options, model: nn.Module) -> dict:
    """What training does to BatchNorm statistics, as recorded in every checkpoint it writes.

    From scratch: momentum 0.1 for every backbone (torchvision's MobileNetV3 uses 0.01) and a
    precise-BN pass over ``FROM_SCRATCH_PRECISE_BN_IMAGES`` training images before each
    validation and save. With ``--pretrained`` (the paper's fine-tuning): the backbone's own
    momentum and no precise-BN pass, unless the options say otherwise.
    """
    scratch = options.pretrained is None
    momentum = options.bn_momentum
    if momentum is None and scratch:
        momentum = FROM_SCRATCH_MOMENTUM
    if momentum is not None:
        set_batchnorm_momentum(model, momentum)
    images = options.precise_bn_images
    if images is None:
        images = FROM_SCRATCH_PRECISE_BN_IMAGES if scratch else 0
    return {"momentum": batchnorm_momentum(model), "precise_bn_images": int(images), "recalibrated_images": 0}
