"""Checks of command-line paths made before any work starts, so that a wrong one is one line
``error: …`` (exit code 2) with nothing computed, printed or half-written. Standard library and
OpenCV only: every package's commands use these (the runtime never imports torch)."""

from pathlib import Path
from typing import Literal

from .choices import DEVICES, is_triton_url
from .contract import GEOMETRIES
from .errors import RuntimeUserError
from .videoio import writable_video_suffixes

CHECKPOINT_SUFFIXES = (".pt", ".pth")
# choices typer lists in --help and enforces (exit code 2)
ResizeMode = Literal[GEOMETRIES]
RuntimeDevice = Literal[DEVICES]


def check_output_file(path: Path | None, option: str) -> None:
    """``path`` can become a file: it is not a folder and its parent is not a file."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise RuntimeUserError(f"{path}: is a folder; {option} takes a file path")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RuntimeUserError(f"{path}: {parent} is a file, not a folder")


def check_output_folder(path: Path | None, option: str) -> None:
    """``path`` can become a folder: it is not a file and no file sits where a parent should be."""
    if path is None:
        return
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "" if blocker == path else f" ({blocker} is a file)"
        raise RuntimeUserError(f"{path}: not a folder{where}; {option} takes a folder")


def check_video_output(path: Path | None, option: str = "--save") -> None:
    """A video file path whose container the installed OpenCV writer can produce."""
    if path is None:
        return
    check_output_file(path, option)
    suffix = Path(path).suffix.lower()
    writable = writable_video_suffixes()
    if suffix not in writable:
        raise RuntimeUserError(
            f"{path}: cannot write {suffix or 'a file without a suffix'} video here; "
            f"{option} takes one of {', '.join(writable)}"
        )


def check_runtime_model(path: Path) -> None:
    """The runtime runs exported models; a training checkpoint gets the command that exports it."""
    path = Path(path)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise RuntimeUserError(
            f"{path}: a PyTorch training checkpoint; the runtime runs exported models: "
            f"run `python cli.py export {path}` first and pass the .onnx it writes"
        )


def check_webcam_paths(model: Path, save: Path | None, jsonl: Path | None) -> None:
    """Everything ``webcam`` can check before it loads the model or opens the source."""
    if not is_triton_url(model):
        check_runtime_model(Path(model))
    check_video_output(save, "--save")
    check_output_file(jsonl, "--jsonl")
