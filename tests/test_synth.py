"""The synthetic EmotionROI-layout set: layout, ground truth, determinism, safe writing, CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.contract import InputContract
from wscnet.data import ImageDataset, detect_layout, eval_transform, load_index
from wscnet.errors import UserError
from wscnet.synth import CLASS_NAMES, SynthConfig, render, write_synth_set

REPO = Path(__file__).resolve().parents[1]


def test_set_loads_as_emotionroi_with_every_image_and_map(tiny_roi_set):
    assert detect_layout(tiny_roi_set) == "emotionroi"
    every = load_index(tiny_roi_set, "all")
    assert every.class_names == list(CLASS_NAMES) and len(every) == 24
    test = load_index(tiny_roi_set, "test")
    assert len(test) == 6 and sorted(s.label for s in test.samples) == list(range(6))  # 20 % of 4, per class
    for s in every.samples:
        assert s.path.suffix == ".jpg" and s.gt_map is not None and s.gt_map.suffix == ".png"
        with Image.open(s.path) as img:
            assert img.size == (64, 64) and img.mode == "RGB" and img.format == "JPEG"
    item = ImageDataset(test, eval_transform(InputContract(32)), with_maps=True)[0]
    assert item["image"].shape == (3, 32, 32) and item["gt_map"].max() == 1.0


def test_ground_truth_marks_one_class_region_of_the_promised_size():
    for label in range(len(CLASS_NAMES)):
        for number in range(5):
            image, gt = render(seed=7, label=label, number=number, size=128)
            assert image.shape == (128, 128, 3) and image.dtype == np.uint8
            assert set(np.unique(gt)) == {0, 255}
            ys, xs = np.nonzero(gt)
            side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
            assert 0.15 * 128 <= side <= 0.40 * 128  # box 25-40 % of the side, shapes fill most of it
            inside = image[gt > 0].astype(float)
            # a two-colour texture: the region has strong contrast inside
            assert inside.std(axis=0).max() > 30


def test_same_seed_same_images_other_seed_other_images():
    a, ga = render(seed=1, label=2, number=3, size=96)
    b, gb = render(seed=1, label=2, number=3, size=96)
    c, _ = render(seed=2, label=2, number=3, size=96)
    assert np.array_equal(a, b) and np.array_equal(ga, gb)
    assert not np.array_equal(a, c)


def test_written_set_is_deterministic(tmp_path):
    cfg = SynthConfig(n_per_class=2, size=48, seed=5)
    one, two = (
        write_synth_set(tmp_path / "a", cfg, progress=False),
        write_synth_set(tmp_path / "b", cfg, progress=False),
    )
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_refuses_a_foreign_folder_and_another_set_unless_overwrite(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        write_synth_set(foreign, SynthConfig(n_per_class=2, size=48), progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    write_synth_set(foreign, SynthConfig(n_per_class=2, size=48), overwrite=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me" and detect_layout(foreign) == "emotionroi"

    out = tmp_path / "set"
    write_synth_set(out, SynthConfig(n_per_class=3, size=48), progress=False)
    with pytest.raises(UserError, match="already holds a synthetic set with other settings"):
        write_synth_set(out, SynthConfig(n_per_class=2, size=48), progress=False)
    assert len(list((out / "images" / "joy").iterdir())) == 3
    write_synth_set(out, SynthConfig(n_per_class=2, size=48), overwrite=True, progress=False)
    assert len(list((out / "images" / "joy").iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_cli_writes_a_set_and_refuses_a_foreign_folder_in_one_line(tmp_path):
    out = tmp_path / "cli_set"
    run = subprocess.run(
        [sys.executable, "cli.py", "synth", str(out), "--n-per-class", "2", "--size", "40", "--seed", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert len(load_index(out, "all")) == 12
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    run = subprocess.run(
        [sys.executable, "cli.py", "synth", str(tmp_path / "foreign"), "--n-per-class", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'foreign'}: folder is not empty and is not a synthetic set (use --overwrite to write into it)"
    ]
