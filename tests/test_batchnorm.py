"""BatchNorm statistics: precise BN computes the exact batch statistics, training applies it
(and the from-scratch momentum) so a short MobileNetV3 run is as good in eval mode as in train
mode, and the choice is recorded in the checkpoints."""

from pathlib import Path

import pytest
import torch
from torch import nn

from export.testing import write_image_folder
from runtime.contract import InputContract
from wscnet.checkpoint import load_checkpoint, read_checkpoint
from wscnet.data import ImageDataset, eval_transform, load_index
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.training import TrainOptions, train
from wscnet.training.batchnorm import batchnorm_plan, recalibrate_batchnorm


def test_recalibration_sets_exact_statistics_and_restores_the_layer():
    layer = nn.BatchNorm2d(2, momentum=0.01)
    model = nn.Sequential(layer).eval()
    # channel 0 holds 1.0 in the first batch and 3.0 in the second, channel 1 -2.0 and 2.0
    # plus a ±1 checkerboard: per batch the mean is the constant, the unbiased variance 4·4/15
    checker = (torch.arange(16).view(4, 4) + torch.arange(4).view(4, 1)) % 2 * 2.0 - 1.0
    first = torch.stack([torch.full((4, 4), 1.0), torch.full((4, 4), -2.0)]) + checker
    second = torch.stack([torch.full((4, 4), 3.0), torch.full((4, 4), 2.0)]) + checker
    batches = [torch.stack([first, first]), torch.stack([second, second])]
    seen = recalibrate_batchnorm(model, batches)
    assert seen == 4
    assert torch.allclose(layer.running_mean, torch.tensor([2.0, 0.0]))
    per_batch_var = 32 / 31  # 32 values of ±1 around the batch mean, unbiased
    assert torch.allclose(layer.running_var, torch.full((2,), per_batch_var))
    assert layer.momentum == 0.01 and not model.training and layer.weight.requires_grad


def test_recalibration_without_batches_keeps_the_old_statistics():
    layer = nn.BatchNorm2d(3)
    layer.running_mean.fill_(5.0)
    assert recalibrate_batchnorm(nn.Sequential(layer), []) == 0
    assert torch.equal(layer.running_mean, torch.full((3,), 5.0))


def test_plan_from_scratch_and_for_fine_tuning(tmp_path):
    model = WSCNet(WSCNetConfig(arch="mobilenet_v3_small", num_classes=3))
    fine_tune = batchnorm_plan(TrainOptions(pretrained=str(tmp_path / "w.pth")), model)
    assert fine_tune == {"momentum": 0.01, "precise_bn_images": 0, "recalibrated_images": 0}
    scratch = batchnorm_plan(TrainOptions(), model)
    assert scratch["momentum"] == 0.1 and scratch["precise_bn_images"] > 0
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    chosen = batchnorm_plan(TrainOptions(bn_momentum=0.05, precise_bn_images=0), model)
    assert chosen == {"momentum": 0.05, "precise_bn_images": 0, "recalibrated_images": 0}


@torch.no_grad()
def accuracies(model: WSCNet, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(train-mode accuracy with batch statistics, eval-mode accuracy) on the same images."""
    model.train()
    train_mode = (model(images).logits.argmax(1) == labels).float().mean().item()
    model.eval()
    eval_mode = (model(images).logits.argmax(1) == labels).float().mean().item()
    return train_mode, eval_mode


def test_short_mobilenet_run_is_as_accurate_in_eval_mode(tmp_path):
    torch.set_num_threads(1)
    data = write_image_folder(tmp_path / "data", num_classes=4, per_class=24, size=64, seed=5)
    out = tmp_path / "run"
    options = TrainOptions(
        data=str(data),
        out=str(out),
        arch="mobilenet_v3_small",
        img_size=64,
        batch_size=16,
        epochs=6,
        lr=0.05,
        head_lr=0.05,
        lr_schedule="cosine",
        grad_clip=2.0,
        workers=0,
        device="cpu",
        seed=0,
    )
    train(options)  # 6 epochs × 4 steps of 16 images (76 training images)
    model, ckpt = load_checkpoint(out / "last.pt")
    index = load_index(str(data), split="train")
    batch = [ImageDataset(index, eval_transform(InputContract(64)))[i] for i in range(len(index.samples))]
    images = torch.stack([item["image"] for item in batch])
    labels = torch.tensor([item["label"] for item in batch])
    train_mode, eval_mode = accuracies(model, images, labels)
    assert train_mode >= 0.6, f"train-mode accuracy {train_mode:.2f}: the model did not learn (chance 0.25)"
    assert eval_mode >= train_mode - 0.10, f"eval-mode {eval_mode:.2f} vs train-mode {train_mode:.2f}"
    assert ckpt["batchnorm"]["recalibrated_images"] == len(labels)
    best = read_checkpoint(out / "best.pt")
    assert best["batchnorm"]["momentum"] == 0.1
    assert best["batchnorm"]["recalibrated_images"] > 0


def test_old_checkpoint_without_batchnorm_key_loads(tmp_path):
    from wscnet.checkpoint import make_checkpoint, save_checkpoint

    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2))
    ckpt = make_checkpoint(model, class_names=["a", "b"], input_size=64)
    assert "batchnorm" not in ckpt
    save_checkpoint(tmp_path / "old.pt", ckpt)
    loaded, _ = load_checkpoint(Path(tmp_path / "old.pt"))
    assert not loaded.training


@pytest.mark.parametrize("images", [-1])
def test_negative_precise_bn_images_is_a_user_error(tmp_path, images):
    from wscnet.errors import UserError

    with pytest.raises(UserError, match="--precise-bn-images"):
        TrainOptions(data=str(tmp_path), out=str(tmp_path / "o"), precise_bn_images=images).validate()
