"""Data layouts, splits, transforms and the skip-bad Dataset, on tiny trees written to disk."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from runtime.contract import InputContract
from wscnet.data import (
    LAYOUTS,
    ImageDataset,
    collate_skip_bad,
    detect_layout,
    eval_transform,
    load_index,
    ten_crop_transform,
    train_transform,
)
from wscnet.errors import UserError

RNG = np.random.default_rng(0)


def write_image(path, size=(40, 32), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1}[mode]
    data = RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(data[..., 0] if channels == 1 else data, mode)
    img.save(path, format=fmt)
    return path


def write_map(path, size=(40, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    m[8:24, 10:30] = 255
    Image.fromarray(m).save(path)
    return path


def make_folder_set(root, classes=("amusement", "anger", "awe"), per_class=20):
    for c in classes:
        for i in range(per_class):
            write_image(root / c / f"{c}{i:02d}.jpg", size=(24, 20))
    return root


# --- layouts --------------------------------------------------------------------------------------


def test_layouts_are_the_published_five():
    assert LAYOUTS == ("folder", "emotionroi", "twitter", "csv", "emod")


def test_folder_layout_split_80_5_15_is_disjoint_seeded_and_sorted_labels(tmp_path):
    root = make_folder_set(tmp_path / "fi")
    assert detect_layout(root) == "folder"
    parts = {s: load_index(root, s, seed=3) for s in ("train", "val", "test", "all")}
    assert parts["all"].class_names == ["amusement", "anger", "awe"]
    sizes = {s: len(parts[s]) for s in parts}
    assert sizes == {"train": 48, "val": 3, "test": 9, "all": 60}
    paths = {s: {x.path for x in parts[s].samples} for s in ("train", "val", "test")}
    assert not (paths["train"] & paths["val"] or paths["train"] & paths["test"] or paths["val"] & paths["test"])
    assert paths["train"] | paths["val"] | paths["test"] == {x.path for x in parts["all"].samples}
    for s in parts["train"].samples:
        assert parts["all"].class_names[s.label] == s.path.parent.name
    # same seed -> same split; another seed -> another split
    assert [x.path for x in load_index(root, "test", seed=3).samples] == [x.path for x in parts["test"].samples]
    assert {x.path for x in load_index(root, "test", seed=4).samples} != paths["test"]


def test_split_does_not_depend_on_listing_order(tmp_path):
    from wscnet.data.index import Sample
    from wscnet.data.splits import split_fractions

    samples = [Sample(tmp_path / f"{i:03d}.jpg", i % 2) for i in range(50)]
    a = split_fractions(samples, {"train": 0.8, "test": 0.2}, seed=1)
    b = split_fractions(list(reversed(samples)), {"train": 0.8, "test": 0.2}, seed=1)
    assert [s.path for s in a["test"]] == [s.path for s in b["test"]]
    assert sum(s.label for s in a["test"]) == 5  # stratified: 5 of each class


def test_emotionroi_layout_matches_gt_by_stem_and_holds_out_val(tmp_path):
    root = tmp_path / "roi"
    lines = {"training.txt": [], "testing.txt": []}
    for c in ("joy", "anger"):
        for i in range(10):
            write_image(root / "images" / c / f"{i}.jpg")
            if i != 9:  # one image without a ground-truth map
                write_map(root / "ground_truth" / c / f"{i}.png")
            lines["testing.txt" if i < 2 else "training.txt"].append(f"{c}/{i}.jpg")
    (root / "training_testing_split").mkdir()
    for name, rows in lines.items():
        (root / "training_testing_split" / name).write_text("\r\n".join(rows) + "\r\n")
    assert detect_layout(root) == "emotionroi"
    train, val, test = (load_index(root, s) for s in ("train", "val", "test"))
    assert train.class_names == ["anger", "joy"]
    assert (len(train), len(val), len(test)) == (14, 2, 4)
    assert {s.path for s in train.samples}.isdisjoint({s.path for s in val.samples})
    first = test.samples[0]
    assert first.gt_map == root / "ground_truth" / first.path.parent.name / f"{first.path.stem}.png"
    no_gt = [s for s in load_index(root, "all").samples if s.path.stem == "9"]
    assert len(no_gt) == 2 and all(s.gt_map is None for s in no_gt)


def test_emotionroi_missing_split_file_names_it(tmp_path):
    root = tmp_path / "roi"
    write_image(root / "images" / "joy" / "1.jpg")
    (root / "training_testing_split").mkdir(parents=True)
    (root / "training_testing_split" / "training.txt").write_text("joy/1.jpg\n")
    with pytest.raises(UserError, match="testing.txt"):
        load_index(root, "test")


def test_emotionroi_unknown_class_in_split_file_names_file_and_line(tmp_path):
    root = tmp_path / "roi"
    write_image(root / "images" / "joy" / "1.jpg")
    (root / "training_testing_split").mkdir(parents=True)
    (root / "training_testing_split" / "testing.txt").write_text("joy/1.jpg\nfury/2.jpg\n")
    with pytest.raises(UserError, match=r"testing.txt:2: unknown class 'fury'"):
        load_index(root, "test")


def test_twitter_layout_reads_the_fold_and_both_path_forms(tmp_path):
    root = tmp_path / "tw"
    for i in range(6):
        write_image(root / "Images" / f"{i}.jpg")
    (root / "Split").mkdir()
    (root / "Split" / "train_2.txt").write_text("0.jpg 0\nImages/1.jpg 1\n2.jpg 1\n3.jpg 0\n")
    write_image(root / "Images" / "with space.jpg")
    (root / "Split" / "test_2.txt").write_text("4.jpg 1\nImages/5.jpg 0\nwith space.jpg\t1\n")
    assert detect_layout(root) == "twitter"
    test = load_index(root, "test", fold=2)
    assert test.class_names == ["negative", "positive"]
    assert [(s.path, s.label) for s in test.samples] == [
        (root / "Images/4.jpg", 1),
        (root / "Images/5.jpg", 0),
        (root / "Images/with space.jpg", 1),
    ]
    every = load_index(root, "all", fold=2)
    assert len(every) == 7 and all(s.path.exists() for s in every.samples)
    with pytest.raises(UserError, match="train_1.txt"):
        load_index(root, "train", fold=1)


def test_csv_layout_with_names_header_and_int_labels(tmp_path):
    root = tmp_path / "flickr"
    rows = []
    for i in range(40):
        write_image(root / "img" / f"{i}.jpg", size=(16, 16))
        rows.append(f"img/{i}.jpg,{'positive' if i % 4 else 'negative'}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert detect_layout(root) == "csv"
    train, val, test = (load_index(root, s) for s in ("train", "val", "test"))
    assert train.class_names == ["negative", "positive"]
    assert len(train) + len(val) + len(test) == 40 and len(test) == 4
    assert sum(s.label == 0 for s in test.samples) == 1  # class-balanced: 10 % of each class
    assert all(s.path.exists() for s in train.samples)
    (root / "labels.csv").write_text("img/0.jpg,1\nimg/1.jpg,0\n")  # no header, int labels
    every = load_index(root / "labels.csv", "all")
    assert [(s.path.name, s.label) for s in every.samples] == [("0.jpg", 1), ("1.jpg", 0)]
    (root / "labels.csv").write_text("file,y\nimg/0.jpg,1\nimg/1.jpg,0\n")  # a header of other names
    assert len(load_index(root, "all")) == 2
    (root / "other.csv").write_text("img/0.jpg,1\n")
    with pytest.raises(UserError, match="several CSV files"):
        load_index(root, "all")
    assert len(load_index(root, "all", csv_file="other.csv")) == 1


def test_emod_layout_pairs_images_with_fixation_maps_by_stem(tmp_path):
    root = tmp_path / "emod"
    for i in range(3):
        write_image(root / "EMOdImages1019" / f"{i + 1}.jpg")
        write_map(root / "Fixation_Maps" / "FixationMap" / "Continous_map" / f"{i + 1}.jpg")
        write_map(root / "Fixation_Maps" / "FixationMap" / "Binary_map" / f"{i + 1}.png")
    assert detect_layout(root) == "emod"
    index = load_index(root, "all")
    assert len(index) == 3 and all(s.label == -1 for s in index.samples)
    assert all(s.fixation.parent.name == "Continous_map" and s.fixation.stem == s.path.stem for s in index.samples)
    with pytest.raises(UserError, match="no labels"):
        load_index(root, "train")


def test_missing_root_and_unknown_layout_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        load_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no known data set layout"):
        detect_layout(tmp_path / "empty")


# --- dataset and transforms -------------------------------------------------------------------------


def test_odd_image_modes_load_as_rgb(tmp_path):
    root = tmp_path / "modes"
    write_image(root / "a" / "gray.png", mode="L")
    write_image(root / "a" / "rgba.png", mode="RGBA")
    write_image(root / "b" / "cmyk.jpg", mode="CMYK", fmt="JPEG")
    write_image(root / "b" / "rgb.jpg")
    data = ImageDataset(load_index(root, "all"), eval_transform(InputContract(32)))
    items = [data[i] for i in range(len(data))]
    assert all(item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32 for item in items)


def test_corrupt_jpeg_is_skipped_with_one_warning(tmp_path, caplog):
    root = make_folder_set(tmp_path / "set", per_class=3)
    bad = root / "anger" / "anger01.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: header only
    index = load_index(root, "all")
    data = ImageDataset(index, eval_transform(InputContract(16)))
    loader = DataLoader(data, batch_size=4, collate_fn=collate_skip_bad)
    for _epoch in range(2):
        seen = sum(len(batch["label"]) for batch in loader)
        assert seen == 8
    warnings = [r.getMessage() for r in caplog.records if r.name == "wscnet" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{bad}: unreadable image (")
    assert collate_skip_bad([None, None]) is None


def test_unreadable_map_keeps_the_image_and_flags_the_map(tmp_path, caplog):
    root = tmp_path / "roi"
    for i in range(2):
        write_image(root / "images" / "joy" / f"{i}.jpg")
        write_map(root / "ground_truth" / "joy" / f"{i}.png")
    (root / "ground_truth" / "joy" / "1.png").write_bytes(b"not a png")
    (root / "training_testing_split").mkdir()
    (root / "training_testing_split" / "testing.txt").write_text("joy/0.jpg\njoy/1.jpg\n")
    data = ImageDataset(load_index(root, "test"), eval_transform(InputContract(16)), with_maps=True)
    batch = collate_skip_bad([data[0], data[1]])
    assert batch["has_gt_map"].tolist() == [True, False]
    assert batch["gt_map"][0].max() == 1.0 and batch["gt_map"][1].max() == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.name == "wscnet" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(str(root / "ground_truth" / "joy" / "1.png"))


def test_items_carry_maps_aligned_with_the_image(tmp_path):
    """Image bright exactly where the GT map is 1: every transform must keep them aligned."""
    root = tmp_path / "roi"
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:30, 5:25] = 255
    (root / "images" / "joy").mkdir(parents=True)
    Image.fromarray(img).save(root / "images" / "joy" / "a.png")
    (root / "ground_truth" / "joy").mkdir(parents=True)
    Image.fromarray(img[..., 0]).save(root / "ground_truth" / "joy" / "a.bmp")
    (root / "training_testing_split").mkdir()
    for name in ("training.txt", "testing.txt"):
        (root / "training_testing_split" / name).write_text("joy/a.png\n")
    index = load_index(root, "test")
    torch.manual_seed(0)
    plain = InputContract(32, (0, 0, 0), (1, 1, 1))
    for transform in (train_transform(plain), train_transform(plain, "paper"), eval_transform(plain)):
        for _ in range(4):  # random crops and flips
            item = ImageDataset(index, transform, with_maps=True)[0]
            assert item["gt_map"].shape == (32, 32) and item["has_gt_map"]
            assert 0.0 <= item["gt_map"].min() and item["gt_map"].max() <= 1.0
            assert torch.allclose(item["image"][0], item["gt_map"], atol=0.02)


def test_ten_crop_gives_ten_crops_and_mirrors(tmp_path):
    image = Image.fromarray(RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    crops = ten_crop_transform(InputContract(28, (0, 0, 0), (1, 1, 1)))(image)
    assert crops.shape == (10, 3, 28, 28)
    # crops 5-9 are the five crops of the mirrored image: its top-left is the top-right, flipped
    assert torch.equal(crops[5], crops[1].flip(-1))
    assert not torch.equal(crops[0], crops[1])


def test_train_transform_is_random_and_normalised():
    image = Image.fromarray(RNG.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    t = train_transform(InputContract(32))
    torch.manual_seed(1)
    a, b = t(image), t(image)
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)
    assert a.min() < 0  # ImageNet normalisation applied
