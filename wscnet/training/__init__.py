"""Training WSCNet: options, the epoch loop, torchrun/DDP support and exact resumption.

Paper setting (ImageNet-pretrained ResNet-101, 448 px): the defaults plus ``--pretrained``.
From scratch the paper's 1e-3 backbone rate barely moves; the synthetic-set recipe, ResNet-18
on a CPU, is::

    python cli.py synth /tmp/synth --n-per-class 200 --size 192 --seed 0
    python cli.py train --data /tmp/synth --out runs/synth --arch resnet18 --img-size 160 \
        --epochs 8 --batch-size 16 --lr 0.02 --head-lr 0.02 --lr-schedule cosine \
        --warmup-epochs 1 --grad-clip 2 --workers 1

Several GPUs or nodes: ``torchrun --nproc_per_node N cli.py train ...`` (DDP, nccl; gloo on
CPU); ``--batch-size`` stays the global batch and rank 0 alone writes the run folder.
"""

from .options import TrainOptions

__all__ = ["TrainOptions", "train"]


def train(options: TrainOptions) -> dict:
    from .loop import train as _train  # torch is imported only when training really starts

    return _train(options)
