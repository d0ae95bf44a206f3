"""Each command option's default is written once, in the dataclass the command fills: the typer
signatures of ``train`` and ``export`` read theirs from ``TrainOptions`` and ``ExportRequest``.
Both sides are read by introspection, so a default changed on one side only fails here."""

import inspect
from dataclasses import MISSING, asdict, fields

from export.commands import export
from export.request import ExportRequest
from wscnet.commands import ablation, train
from wscnet.training.options import TrainOptions

# export options that are a field of ExportRequest negated, and one that only decides the exit code
EXPORT_NEGATED = {"no_fused_op": "fused_op", "skip_parity": "parity"}
EXPORT_ONLY = {"no_fail"}


def typer_defaults(command) -> dict:
    """Each parameter's default as typer declares it; required ones (``...``) left out."""
    declared = {name: p.default.default for name, p in inspect.signature(command).parameters.items()}
    return {name: value for name, value in declared.items() if value is not Ellipsis}


def dataclass_defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def test_every_train_option_is_a_training_field_with_the_same_default():
    options, defaults = typer_defaults(train), dataclass_defaults(TrainOptions)
    assert set(inspect.signature(train).parameters) <= {f.name for f in fields(TrainOptions)}
    assert len(options) > 40  # the signature was read, not an empty one
    assert {name: defaults[name] for name in options} == options


def test_ablation_shares_the_training_defaults_it_does_not_choose_itself():
    options, defaults = typer_defaults(ablation), dataclass_defaults(TrainOptions)
    for name in ("pretrained", "val_every", "workers", "device", "amp", "diagnostics_every"):
        assert options[name] == defaults[name], name


def test_every_export_option_is_a_request_field_with_the_same_default():
    options, defaults = typer_defaults(export), dataclass_defaults(ExportRequest)
    names = set(inspect.signature(export).parameters) - EXPORT_ONLY - set(EXPORT_NEGATED)
    assert names <= {f.name for f in fields(ExportRequest)} and len(names) > 20
    for option, field in EXPORT_NEGATED.items():
        assert options[option] is (not defaults[field])
    assert {name: defaults[name] for name in names if name in defaults} == {
        name: options[name] for name in names if name in defaults
    }


def test_train_hands_every_option_to_training_unchanged(tmp_path, monkeypatch):
    """The command passes its options through by name: with the typer defaults and three changed
    values, training gets exactly TrainOptions with those three changed (paths as strings)."""
    import wscnet.training

    received = []
    monkeypatch.setattr(wscnet.training, "train", lambda options: received.append(options) or {"is_main": False})
    given = {
        **typer_defaults(train),
        "data": tmp_path,
        "out": tmp_path / "run",
        "epochs": 3,
        "csv_file": tmp_path / "labels.csv",
        "det_label_smoothing": 0.25,
        "pretrained": None,
    }
    train(**given)
    expected = TrainOptions(
        data=str(tmp_path),
        out=str(tmp_path / "run"),
        epochs=3,
        csv_file=str(tmp_path / "labels.csv"),
        det_label_smoothing=0.25,
    )
    assert [asdict(o) for o in received] == [asdict(expected)]
