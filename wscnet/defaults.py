"""Each option's default written once: a command's typer options read theirs from the dataclass
the command fills (``TRAIN.epochs`` is ``TrainOptions``' default for ``--epochs``)."""

from dataclasses import MISSING, fields
from types import SimpleNamespace


def field_defaults(cls) -> SimpleNamespace:
    """The declared default of each field of the dataclass ``cls`` (as written, before any
    ``__post_init__``), as attributes named like the fields."""
    return SimpleNamespace(**{f.name: f.default for f in fields(cls) if f.default is not MISSING})


def field_values(cls, values: dict) -> dict:
    """The entries of ``values`` (a command's parameters) that name a field of ``cls``."""
    names = {f.name for f in fields(cls)}
    return {name: value for name, value in values.items() if name in names}
