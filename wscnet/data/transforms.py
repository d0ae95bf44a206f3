"""Image transforms of the paper: random crop + flip for training, whole-image resize or ten
crops for testing. Each also moves ground-truth / fixation maps along with the image
(``with_maps``), so a predicted map stays aligned with its ground truth.
"""

from collections.abc import Sequence

import torch
import torchvision.transforms.functional as TF
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 8 / 7  # 448 crops from 512 px images, as in the paper


def _to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(image), list(mean), list(std))


def _map_tensor(image: Image.Image) -> torch.Tensor:
    """A grayscale map as S×S float in [0, 1]."""
    return TF.to_tensor(image)[0]


def _resize_shorter(image: Image.Image, side: int) -> Image.Image:
    w, h = image.size
    scale = side / min(w, h)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class _Transform:
    """PIL image (and optional PIL maps) -> normalised tensor (and map tensors)."""

    def __init__(self, size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.resize_to = round(size * RESIZE_RATIO)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.with_maps(image, [])[0]

    def with_maps(self, image: Image.Image, maps: list[Image.Image]):
        raise NotImplementedError


class TrainTransform(_Transform):
    """Resize the shorter side to size·8/7, take a random size×size crop, flip half the time."""

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        image = _resize_shorter(image, self.resize_to)
        w, h = image.size
        # torch's RNG, so DataLoader workers get distinct, seedable crops
        left = int(torch.randint(0, w - self.size + 1, ()).item())
        top = int(torch.randint(0, h - self.size + 1, ()).item())
        flip = bool(torch.rand(()) < 0.5)

        def geometry(img: Image.Image) -> Image.Image:
            img = img.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + self.size, top + self.size))
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else img

        return _to_tensor(geometry(image), self.mean, self.std), [_map_tensor(geometry(m)) for m in maps]

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, resize_to={self.resize_to})"


class EvalTransform(_Transform):
    """Resize the whole image to size×size (no crop), so maps cover the whole image."""

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        square = (self.size, self.size)
        resized = [m.resize(square, Image.Resampling.BILINEAR) for m in maps]
        return _to_tensor(image.resize(square, Image.Resampling.BILINEAR), self.mean, self.std), [_map_tensor(m) for m in resized]

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"


class TenCropTransform(_Transform):
    """10×3×S×S: four corners + centre of the image resized (shorter side) to size·8/7, and
    their mirror images. Maps are returned for the whole image, resized to size×size."""

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        crops = TF.ten_crop(_resize_shorter(image, self.resize_to), [self.size, self.size])
        stacked = torch.stack([_to_tensor(c, self.mean, self.std) for c in crops])  # 10×3×S×S
        square = (self.size, self.size)
        return stacked, [_map_tensor(m.resize(square, Image.Resampling.BILINEAR)) for m in maps]

    def __repr__(self) -> str:
        return f"TenCropTransform(size={self.size}, resize_to={self.resize_to})"


def train_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> TrainTransform:
    return TrainTransform(size, mean, std)


def eval_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> EvalTransform:
    return EvalTransform(size, mean, std)


def ten_crop_transform(size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> TenCropTransform:
    return TenCropTransform(size, mean, std)
