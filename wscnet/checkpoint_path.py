"""What a checkpoint argument must be, checked without loading torch: an existing file that is not
an exported model (commands that take a checkpoint say so before any work)."""

from pathlib import Path

from .errors import UserError

EXPORTED_SUFFIXES = (".onnx", ".engine", ".plan")
WANTS_CHECKPOINT = (
    "this command takes a .pt checkpoint written by `train` "
    "(exported models run with `webcam` and are checked with `parity`)"
)


def check_checkpoint_path(path: str | Path) -> Path:
    """``path`` as a Path; a missing file or an exported model is one UserError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if path.suffix.lower() in EXPORTED_SUFFIXES:
        raise UserError(f"{path}: an exported model, not a training checkpoint; {WANTS_CHECKPOINT}")
    return path
