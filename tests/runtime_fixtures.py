"""Real files for the runtime tests: an exported WSCNet ONNX model and videos written by OpenCV.

Shared by tests/test_runtime_*.py (imported, not a conftest, so the other packages' tests do not load them).
The model is built once per test session with the export package's own code, so the runtime is tested
on files exactly as ``python cli.py export`` writes them.
"""

import time
from pathlib import Path

import cv2
import numpy as np

from runtime.sinks import read_records

MODEL_SIZE = 64
NUM_CLASSES = 6
FRAME_W, FRAME_H = 128, 96


def exported_model(tmp_path_factory, batch: int | None = 1) -> Path:
    """A briefly trained resnet18 WSCNet (6 classes, 64 px) exported to ONNX; cached per session.

    ``batch``: the fixed batch the file takes (1: ``export``'s default), or None for a dynamic batch.
    All variants come from the same checkpoint, so they compute the same function.
    """
    root = tmp_path_factory.getbasetemp() / "runtime-model"
    suffix = "" if batch == 1 else ("-dynamic" if batch is None else f"-b{batch}")
    model = root / f"wscnet-r18-64{suffix}.onnx"
    if not model.is_file():
        from export.onnx_export import export_onnx
        from export.testing import make_trained_checkpoint

        root.mkdir(exist_ok=True)
        ckpt = root / "r18.pt"
        if not ckpt.is_file():
            make_trained_checkpoint(ckpt, arch="resnet18", num_classes=NUM_CLASSES, size=MODEL_SIZE, steps=12)
        export_onnx(ckpt, model, batch=batch or 1, dynamic_batch=batch is None)
    return model


def scene(index: int, width: int = FRAME_W, height: int = FRAME_H, seed: int = 0) -> np.ndarray:
    """BGR frame showing one class's coloured blob, the class changing every few frames."""
    from export.testing import synthetic_image

    rng = np.random.default_rng(seed * 1000 + index)
    rgb = synthetic_image((index // 3) % NUM_CLASSES, max(width, height), rng)
    return cv2.cvtColor(np.ascontiguousarray(rgb[:height, :width]), cv2.COLOR_RGB2BGR)


def write_video(path: Path, frames: int, fps: float = 15.0, size=(FRAME_W, FRAME_H)) -> Path:
    """``frames`` frames of ``scene``; MJPG for .avi, mp4v for .mp4."""
    fourcc = "MJPG" if Path(path).suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(scene(i, *size))
    writer.release()
    return Path(path)


def read_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def read_jsonl(path: Path) -> list[dict]:
    """The frame records of a webcam JSONL (events, the other kind of record, are left out)."""
    return read_records(path, "frames")


class FakeCapture:
    """A camera (none exists here) for ``VideoSource(opener=...)``: ``frames`` frames of ``scene``,
    ``delay`` s apart, then it goes dark (read() fails)."""

    def __init__(self, frames: int, delay: float = 0.0, opened: bool = True) -> None:
        self.left, self.delay, self.opened = frames, delay, opened

    def isOpened(self) -> bool:
        return self.opened

    def read(self):
        time.sleep(self.delay)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, scene(self.left)

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass
