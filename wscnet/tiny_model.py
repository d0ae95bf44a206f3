"""A tiny trained WSCNet and its images: the benchmarks' default models and the tests' checkpoints.

Latency does not need trained weights, but top-1 comparisons do: a random-init model's softmax is
near uniform, so they would mean little. The checkpoint here is trained for a few SGD steps on
coloured images, one colour pattern per class, until its predictions are confident and its
sentiment maps have structure.
"""

from pathlib import Path

import cv2
import numpy as np
import torch

from wscnet.checkpoint import IMAGENET_MEAN, IMAGENET_STD, make_checkpoint, save_checkpoint
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.training.batchnorm import recalibrate_batchnorm

CLASS_COLOURS = np.array(
    [
        [220, 40, 40],
        [40, 200, 40],
        [40, 60, 220],
        [220, 200, 40],
        [200, 40, 200],
        [40, 200, 210],
        [120, 120, 120],
        [250, 140, 20],
    ],
    dtype=np.float32,
)


def synthetic_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image: noise background with a blob of the class colour at a random place."""
    image = rng.uniform(0, 255, (size, size, 3)).astype(np.float32) * 0.5
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.15, 0.3) * size
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[..., None]
    image = image * (1 - blob) + CLASS_COLOURS[label % len(CLASS_COLOURS)] * blob
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, num_classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """ImageFolder layout ``root/class_<c>/<i>.png`` of synthetic images."""
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        folder = Path(root) / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rgb = synthetic_image(c, size, rng)
            cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return Path(root)


def _normalised(images: np.ndarray) -> torch.Tensor:
    """N×S×S×3 uint8 RGB -> N×3×S×S float, ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std


def make_trained_checkpoint(
    path: Path,
    *,
    arch: str = "resnet18",
    num_classes: int = 6,
    size: int = 64,
    steps: int = 12,
    seed: int = 0,
    **config,
) -> Path:
    """Train a tiny WSCNet for ``steps`` SGD steps on synthetic images and save its checkpoint."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = WSCNet(WSCNetConfig(arch=arch, num_classes=num_classes, **config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _ in range(steps):
        labels = rng.integers(0, num_classes, 16)
        images = np.stack([synthetic_image(int(c), size, rng) for c in labels])
        x = _normalised(images)
        target = torch.from_numpy(labels).long()
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.logits, target)
        loss = loss + torch.nn.functional.cross_entropy(out.det_logits, target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=20.0)  # deep nets blow up otherwise
        optimizer.step()
    # exact BN statistics of the final weights, as a long training run would have them
    recalibrate_batchnorm(model, synthetic_batches(num_classes, size, rng))
    model.eval()
    ckpt = make_checkpoint(model, class_names=[f"class_{c}" for c in range(num_classes)], input_size=size)
    save_checkpoint(path, ckpt)
    return Path(path)


def synthetic_batches(num_classes: int, size: int, rng: np.random.Generator, *, batches: int = 4, batch: int = 16):
    """``batches`` normalised N×3×S×S tensors of ``synthetic_image``s with random labels."""
    for _ in range(batches):
        labels = rng.integers(0, num_classes, batch)
        yield _normalised(np.stack([synthetic_image(int(c), size, rng) for c in labels]))
