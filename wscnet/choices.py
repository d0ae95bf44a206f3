"""Every closed set of option values in one torch-free place: the model, training and data code
check against these, and the CLI turns them into choices that ``--help`` lists."""

from typing import Literal

from runtime.contract import GEOMETRIES

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
BOTTLENECK_RESNETS = ("resnet50", "resnet101", "resnet152")  # from scratch they need zero-init residuals
MOBILENETS = ("mobilenet_v3_large", "mobilenet_v3_small")
ARCHITECTURES = RESNETS + MOBILENETS
HEADS = ("wscnet", "cam")
POOLS = ("max", "avg")
MAP_WEIGHTS = ("softmax", "raw")
COUPLINGS = ("both", "local", "none")
LR_SCHEDULES = ("step", "cosine")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
LAYOUTS = ("folder", "emotionroi", "twitter", "csv", "emod")
SPLITS = ("train", "val", "test", "all")
AUGMENTS = ("aspect", "camera", "sides", "paper")  # training windows, wscnet/data/transforms.py
BACKBONE_STRIDE = 32  # every backbone halves the input five times; the input side must divide by it


def input_side_problem(size: int) -> str | None:
    """Why ``size`` cannot be a model input side, or None when it can."""
    if size < BACKBONE_STRIDE or size % BACKBONE_STRIDE:
        return f"must be a positive multiple of {BACKBONE_STRIDE} (>= {BACKBONE_STRIDE}; the backbone's stride); got {size}"
    return None


# typer shows a Literal's values in --help and refuses others (exit code 2) before the command runs
Arch = Literal[ARCHITECTURES]
Head = Literal[HEADS]
Pool = Literal[POOLS]
MapWeight = Literal[MAP_WEIGHTS]
Coupling = Literal[COUPLINGS]
LrSchedule = Literal[LR_SCHEDULES]
TrainDevice = Literal[TRAIN_DEVICES]
Layout = Literal[LAYOUTS]
Split = Literal[SPLITS]
Geometry = Literal[GEOMETRIES]
Augment = Literal[AUGMENTS]
