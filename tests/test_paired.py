"""WSCNet runs against CAM runs of the same seed, on hand-made run records with known answers."""

import json

import pytest

from wscnet.paired import markdown, paired_rows, val_accuracy_at


def _run(tmp_path, variant, seed, accuracy, f, val_curve, data_set="set_a", recipe="r"):
    run_dir = tmp_path / data_set / recipe / variant / f"seed{seed}"
    run_dir.mkdir(parents=True)
    epochs = [{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(val_curve)]
    (run_dir / "history.json").write_text(json.dumps({"epochs": epochs}))
    head = "cam" if variant == "cam" else "wscnet"
    return {
        "set": data_set,
        "recipe": recipe,
        "variant": variant,
        "head": head,
        "seed": seed,
        "run": str(run_dir),
        "accuracy": accuracy,
        "f": f,
    }


def _curve(at_ten):
    return [0.1] * 9 + [at_ten, 0.99, 0.99]


def test_paired_differences_errors_and_verdicts(tmp_path):
    runs = [
        _run(tmp_path, "cam", 0, 0.90, 0.30, _curve(0.80)),
        _run(tmp_path, "cam", 1, 0.80, 0.30, _curve(0.60)),
        _run(tmp_path, "wscnet-k4", 0, 0.95, 0.20, _curve(0.66)),
        _run(tmp_path, "wscnet-k4", 1, 0.80, 0.35, _curve(0.66)),
        _run(tmp_path, "wscnet-k4", 2, 0.10, 0.10, _curve(0.10)),  # no CAM seed 2: left out
    ]
    (row,) = paired_rows(runs)
    assert row["seeds"] == 2
    # differences +0.05 and 0: mean 0.025, sample sd 0.05/√2, standard error that / √2 = 0.025
    assert row["accuracy_delta"] == pytest.approx(0.025)
    assert row["accuracy_delta_error"] == pytest.approx(0.025)
    assert (row["wins"], row["ties"], row["losses"]) == (1, 1, 0)
    assert row["f_delta"] == pytest.approx(-0.025)  # -0.10 and +0.05: sd 0.15/√2, error 0.075
    assert row["f_delta_error"] == pytest.approx(0.075)
    assert row["early"] == pytest.approx(0.66) and row["early_cam"] == pytest.approx(0.70)
    assert (row["early_ok"], row["accuracy_ok"], row["f_ok"]) == (True, True, False)
    text = markdown([row])
    assert (
        "| set_a | r | wscnet-k4 | 2 | +0.025 ± 0.025 | 1/1/0 | -0.025 ± 0.075 | 0.660 (0.700) | yes | yes | no |"
        in text
    )


def test_early_epoch_misses_by_more_than_the_margin(tmp_path):
    runs = [
        _run(tmp_path, "cam", 0, 0.50, 0.30, _curve(0.80)),
        _run(tmp_path, "wscnet-k4", 0, 0.50, 0.30, _curve(0.74)),
    ]
    (row,) = paired_rows(runs)
    assert row["accuracy_delta_error"] is None and (row["wins"], row["ties"], row["losses"]) == (0, 1, 0)
    assert (row["early_ok"], row["accuracy_ok"], row["f_ok"]) == (False, True, True)


def test_pairs_stay_within_their_set_and_recipe(tmp_path):
    runs = [
        _run(tmp_path, "cam", 0, 0.90, 0.30, _curve(0.8), data_set="set_a"),
        _run(tmp_path, "wscnet-k4", 0, 0.70, 0.30, _curve(0.8), data_set="set_b"),
        _run(tmp_path, "wscnet-k4", 0, 0.70, 0.30, _curve(0.8), data_set="set_a", recipe="other"),
    ]
    assert paired_rows(runs) == [] and markdown([]) == ""


def test_validation_accuracy_at_an_epoch_that_was_not_validated(tmp_path):
    short = _run(tmp_path, "cam", 0, 0.5, 0.3, [0.2, 0.3])
    assert val_accuracy_at(short["run"], 2) == 0.3 and val_accuracy_at(short["run"], 10) is None
    gap = _run(tmp_path, "cam", 1, 0.5, 0.3, [float("nan")] * 10)
    assert val_accuracy_at(gap["run"], 10) is None and val_accuracy_at(tmp_path / "missing", 1) is None
