"""A test/demo video: images pan slowly through a 640×480 frame, about a second each."""

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .atomic import atomic_path
from .errors import UserError


def slideshow_frames(image: np.ndarray, frame_size: tuple[int, int], n_frames: int):
    """Yield n_frames BGR frames (H×W×3): ``image`` scaled to the frame width, a frame-high window
    sliding down it, so every frame is filled with picture (no padding the model never saw)."""
    width, height = frame_size
    tile = cv2.resize(image, (width, max(width, height)), interpolation=cv2.INTER_AREA)
    travel = tile.shape[0] - height
    for i in range(n_frames):
        y = int(round(travel * i / max(n_frames - 1, 1)))
        yield np.ascontiguousarray(tile[y : y + height])


def write_slideshow_video(
    image_paths: Sequence[str | Path],
    out_path: str | Path,
    *,
    frame_size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    frames_per_image: int = 30,
) -> int:
    """Write an mp4 (mp4v) slideshow of ``image_paths``; returns the number of frames written."""
    out_path = Path(out_path)
    written = 0
    with atomic_path(out_path) as tmp:
        tmp_video = tmp.with_suffix(".mp4")  # OpenCV picks the container from the extension
        writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame_size)
        if not writer.isOpened():
            raise UserError(f"{out_path}: OpenCV cannot open an mp4v writer here")
        try:
            for path in image_paths:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    continue
                for frame in slideshow_frames(image, frame_size, frames_per_image):
                    writer.write(frame)
                    written += 1
        finally:
            writer.release()
            if written:
                tmp_video.replace(tmp)
            tmp_video.unlink(missing_ok=True)
        if written == 0:
            raise UserError(f"{out_path}: none of the {len(image_paths)} images could be read")
    return written
