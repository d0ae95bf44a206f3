"""Training WSCNet: options, the epoch loop, torchrun/DDP support and exact resumption.

Paper setting (ImageNet-pretrained ResNet-101, 448 px): the defaults plus ``--pretrained``
(``--recipe paper``). From scratch the paper's 1e-3 backbone rate barely moves; the from-scratch
recipe (``recipes.py``: lr 0.02, cosine, warm-up, clipping, the WSCNet head warm-up of
``head_warmup.py`` and a slow start of the coupled half), ResNet-18 on a CPU, is::

    python cli.py synth /tmp/synth --n-per-class 200 --size 192 --seed 0
    python cli.py train --data /tmp/synth --out runs/synth --arch resnet18 --img-size 160 \
        --epochs 8 --recipe scratch --workers 1

Several GPUs or nodes: ``torchrun --nproc_per_node N cli.py train ...`` (DDP, nccl; gloo on
CPU); ``--batch-size`` stays the global batch and rank 0 alone writes the run folder.
"""

from .options import TrainOptions

__all__ = ["TrainOptions", "train"]


def train(options: TrainOptions) -> dict:
    from .loop import train as _train  # torch is imported only when training really starts

    return _train(options)
