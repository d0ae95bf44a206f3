"""Self-describing checkpoints: round trip, weights_only loading, atomic writes, clear errors."""

import pytest
import torch

from wscnet.checkpoint import FORMAT, load_checkpoint, make_checkpoint, read_checkpoint, save_checkpoint
from wscnet.errors import UserError
from wscnet.model import WSCNet, WSCNetConfig

NAMES = ["neg", "pos"]


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=2, pool="avg", coupling="local"))


def test_round_trip_rebuilds_identical_model(tmp_path, model):
    path = tmp_path / "m.pt"
    state = {"epoch": 3, "optimizer": {"lr": 0.1}, "rng": {"torch": torch.get_rng_state()}}
    save_checkpoint(
        path,
        make_checkpoint(
            model,
            class_names=NAMES,
            input_size=96,
            epoch=3,
            metrics={"val_accuracy": 0.5},
            train_state=state,
        ),
    )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["model_config"]["pool"] == "avg" and raw["model_config"]["coupling"] == "local"
    assert raw["class_names"] == NAMES and raw["input_size"] == 96 and raw["epoch"] == 3
    assert set(raw["versions"]) >= {"wscnet", "torch", "torchvision", "python"}
    assert raw["train_state"]["epoch"] == 3
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert ckpt["metrics"] == {"val_accuracy": 0.5}


def test_class_name_count_must_match(model):
    with pytest.raises(ValueError, match="class names"):
        make_checkpoint(model, class_names=["a", "b", "c"], input_size=64)


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match=r"junk\.pt: not a readable checkpoint"):
        read_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not a wscnet-edge checkpoint"):
        read_checkpoint(foreign)


def test_newer_format_and_missing_keys_are_rejected(tmp_path, model):
    ckpt = make_checkpoint(model, class_names=NAMES, input_size=64)
    newer = dict(ckpt, format_version=99)
    save_checkpoint(tmp_path / "new.pt", newer)
    with pytest.raises(UserError, match="newer"):
        read_checkpoint(tmp_path / "new.pt")
    partial = {k: v for k, v in ckpt.items() if k != "mean"}
    save_checkpoint(tmp_path / "partial.pt", partial)
    with pytest.raises(UserError, match="lacks mean"):
        read_checkpoint(tmp_path / "partial.pt")


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path, model):
    ckpt = make_checkpoint(model, class_names=NAMES, input_size=64)
    ckpt["model_config"] = dict(ckpt["model_config"], k=4)
    save_checkpoint(tmp_path / "bad.pt", ckpt)
    with pytest.raises(UserError, match=r"bad\.pt: weights do not match"):
        load_checkpoint(tmp_path / "bad.pt")


def test_failed_write_keeps_the_previous_file(tmp_path, model):
    path = tmp_path / "keep.pt"
    save_checkpoint(path, make_checkpoint(model, class_names=NAMES, input_size=64, epoch=1))
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, {"unpicklable": lambda: None})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]  # no temporary left behind
