"""Training WSCNet: options, the epoch loop, torchrun/DDP support and exact resumption."""

from .options import TrainOptions

__all__ = ["TrainOptions", "train"]


def train(options: TrainOptions) -> dict:
    from .loop import train as _train  # torch is imported only when training really starts

    return _train(options)
