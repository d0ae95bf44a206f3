"""Image transforms for training and evaluation. Every one ends in the runtime's frame → tensor
function (``runtime.preprocess.Preprocessor``) under the model's InputContract, so training,
eval, calibration, parity and the camera all see a picture the same way. Ground-truth and
fixation maps move with the image (``with_maps``), so a predicted map stays aligned with them.

Training augmentations (``AUGMENTS``):
- ``aspect`` (default): a random window of 60–100 % of the picture's area with an aspect ratio
  between 9:16 and 16:9 (reflect-padded where it leaves the picture), then the contract's
  geometry. Under the default ``squash`` geometry this shows the model objects compressed as a
  4:3, 16:9 or 9:16 camera frame compresses them, so the whole frame can be classified.
- ``camera``: as ``aspect``, but the window's area ranges from 60 % to 200 % of the picture's
  (log-uniform), at a random place: beyond 100 % the picture sits inside a wider frame whose rest
  continues it by reflection, as a camera frame around the object would show it. One view
  (``squash``) then sees both stretched frames and wider scenes in training, which makes one view
  enough more often (export still measures and decides; docs/views.md).
- ``sides``: each side of the window drawn on its own, log-uniform from 1/2 to 2 of the picture's
  side, at a random place (reflection beyond the picture). A camera frame changes one side at a
  time: ``squash`` of a picture stretched to 16:9 is the picture itself, ``squash`` of a 16:9 scene
  around it is a window 16/9 as wide and as high, ``crop`` of the stretched frame one 9/16 as wide.
  Those lie inside this square of sides (log scale) but at a corner of ``camera``'s area × aspect box.
- ``paper``: the paper's square crop of 7/8 of the shorter side (448 from 512) at a random place.
All of them flip half the time.
"""

import math

import cv2
import numpy as np
import torch
from PIL import Image

from runtime.contract import InputContract
from runtime.preprocess import Geometry, Preprocessor, place_plane, resize_picture
from wscnet.choices import AUGMENTS

ASPECT_RANGE = (9 / 16, 16 / 9)
AREA_RANGE = (0.6, 1.0)
CAMERA_AREA_RANGE = (0.6, 2.0)  # 2.0 covers a 16:9 or 9:16 frame around a square picture (16/9 ≈ 1.78)
SIDE_RANGE = (0.5, 2.0)  # each side, ``sides``: past 9/16 and 16/9, the narrowest and widest camera frames
PAPER_CROP = 7 / 8  # 448 crops from 512 px images, as in the paper
TEN_CROP_RESIZE = 8 / 7


def picture_bgr(image: Image.Image) -> np.ndarray:
    """A PIL RGB image as the BGR uint8 frame the runtime would get from a camera."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def map_plane(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """A grayscale map as float32 in [0, 1] at the picture's size (w, h)."""
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


class _Transform:
    """PIL image (and optional PIL maps) -> normalised 3×S×S tensor (and S×S map tensors)."""

    def __init__(self, contract: InputContract) -> None:
        self.pre = Preprocessor(contract)  # checks the contract
        self.contract, self.size = contract, contract.input_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.with_maps(image, [])[0]

    def with_maps(self, image: Image.Image, maps: list[Image.Image]):
        raise NotImplementedError

    def _apply(self, bgr: np.ndarray, planes: list[np.ndarray]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tensor, geo = self.pre.tensor(bgr)
        return torch.from_numpy(tensor), [self._plane(p, geo) for p in planes]

    def _plane(self, plane: np.ndarray, geo: Geometry) -> torch.Tensor:
        return torch.from_numpy(place_plane(plane, geo, self.contract.interpolation))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.contract.describe()})"


class TrainTransform(_Transform):
    """A random window (see AUGMENTS), flipped half the time, then the contract's geometry."""

    def __init__(self, contract: InputContract, augment: str = "aspect") -> None:
        super().__init__(contract)
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}; got {augment!r}")
        self.augment = augment

    def window(self, w: int, h: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the window in picture pixels; it may reach past the edges."""
        if self.augment == "paper":
            cw = ch = max(1, round(min(w, h) * PAPER_CROP))
        elif self.augment == "sides":
            cw, ch = max(1, round(w * log_uniform(*SIDE_RANGE))), max(1, round(h * log_uniform(*SIDE_RANGE)))
        else:
            area = w * h * self.area_fraction()
            ratio = log_uniform(*ASPECT_RANGE)
            cw, ch = max(1, round(math.sqrt(area * ratio))), max(1, round(math.sqrt(area / ratio)))
        # torch's RNG, so DataLoader workers get distinct, seedable windows
        x = int(torch.randint(min(0, w - cw), max(0, w - cw) + 1, ()).item())
        y = int(torch.randint(min(0, h - ch), max(0, h - ch) + 1, ()).item())
        return x, y, cw, ch

    def area_fraction(self) -> float:
        """The window's area over the picture's: uniform for ``aspect``, log-uniform for ``camera``."""
        if self.augment == "camera":
            return log_uniform(*CAMERA_AREA_RANGE)
        return float(torch.empty(()).uniform_(*AREA_RANGE))

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        bgr = picture_bgr(image)
        h, w = bgr.shape[:2]
        x, y, cw, ch = self.window(w, h)
        flip = bool(torch.rand(()) < 0.5)
        views = [cut_window(a, x, y, cw, ch, flip) for a in [bgr, *(map_plane(m, (w, h)) for m in maps)]]
        return self._apply(views[0], views[1:])


class EvalTransform(_Transform):
    """The whole picture under the contract: exactly what the runtime does with a frame."""

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        bgr = picture_bgr(image)
        h, w = bgr.shape[:2]
        return self._apply(bgr, [map_plane(m, (w, h)) for m in maps])


class TenCropTransform(_Transform):
    """10×3×S×S: four corners + centre of the picture resized (shorter side) to S·8/7, and their
    mirror images (the paper's test-time crops). Maps come back for the whole picture (squash)."""

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        bgr = picture_bgr(image)
        h, w = bgr.shape[:2]
        side = round(self.size * TEN_CROP_RESIZE)
        scale = side / min(w, h)
        big = resize_picture(bgr, max(side, round(w * scale)), max(side, round(h * scale)), self.contract.interpolation)
        mirrored = np.ascontiguousarray(big[:, ::-1])
        crops = [
            torch.from_numpy(self.pre.tensor(c)[0])
            for c in five_crops(big, self.size) + five_crops(mirrored, self.size)
        ]
        whole = Geometry(self.size, (0, 0, self.size, self.size), (0, 0, w, h))
        return torch.stack(crops), [self._plane(map_plane(m, (w, h)), whole) for m in maps]


class ViewsTransform(_Transform):
    """V×3×S×S: the picture in each of the contract's views (``contract.views``), as the runtime
    shows a frame to the model; their softmax is averaged, as the runtime averages it."""

    def __init__(self, contract: InputContract) -> None:
        super().__init__(contract)
        self.views = [Preprocessor(contract.with_geometry(view)) for view in contract.views]

    def with_maps(self, image: Image.Image, maps: list[Image.Image]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        bgr = picture_bgr(image)
        return torch.stack([torch.from_numpy(view.tensor(bgr)[0]) for view in self.views]), []


def log_uniform(low: float, high: float) -> float:
    """A draw between ``low`` and ``high``, uniform in log scale, from torch's RNG (seedable per worker)."""
    return math.exp(float(torch.empty(()).uniform_(math.log(low), math.log(high))))


def cut_window(image: np.ndarray, x: int, y: int, w: int, h: int, flip: bool = False) -> np.ndarray:
    """The w×h window at (x, y), reflect-padded where it leaves the image, mirrored if ``flip``."""
    ih, iw = image.shape[:2]
    pad = (max(0, -y), max(0, y + h - ih), max(0, -x), max(0, x + w - iw))
    if any(pad):
        image = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REFLECT_101)
        x, y = x + pad[2], y + pad[0]
    window = image[y : y + h, x : x + w]
    return np.ascontiguousarray(window[:, ::-1] if flip else window)


def five_crops(image: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = image.shape[:2]
    corners = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size), ((w - size) // 2, (h - size) // 2)]
    return [np.ascontiguousarray(image[y : y + size, x : x + size]) for x, y in corners]


def train_transform(contract: InputContract, augment: str = "aspect") -> TrainTransform:
    return TrainTransform(contract, augment)


def eval_transform(contract: InputContract) -> EvalTransform:
    return EvalTransform(contract)


def ten_crop_transform(contract: InputContract) -> TenCropTransform:
    return TenCropTransform(contract)


def views_transform(contract: InputContract) -> ViewsTransform:
    return ViewsTransform(contract)
