"""From-scratch initialisation: zero-init residual blocks (deep ResNets) and the zero-init coupled
half of WSCNet's classifier. Expectations come from what the initialisation means, not the code:
a residual block whose last BatchNorm scale is 0 passes a non-negative input through unchanged,
and a classifier that gives 0 weight to GAP(M∘F) cannot see the detector."""

import json

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from wscnet.ablation import _check_reusable
from wscnet.backbones import build_backbone, zero_init_residual
from wscnet.errors import UserError
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.training import TrainOptions
from wscnet.training.head_warmup import zero_init_coupled_weights


def _identity_blocks(backbone: nn.Module) -> list[nn.Module]:
    """Residual blocks without a downsample path: their skip connection is the identity."""
    return [m for m in backbone.modules() if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is None]


@pytest.mark.parametrize("arch, blocks", [("resnet18", 8), ("resnet50", 16)])
def test_zeroed_residual_blocks_start_as_the_identity(arch, blocks):
    torch.manual_seed(0)
    backbone, _ = build_backbone(arch)
    assert zero_init_residual(backbone) == blocks  # resnet18: 2+2+2+2, resnet50: 3+4+6+3
    backbone.eval()
    for block in _identity_blocks(backbone):
        channels = block.conv1.in_channels
        x = torch.relu(torch.randn(2, channels, 5, 5))  # a block's input follows a ReLU
        torch.testing.assert_close(block(x), x)


def test_residual_blocks_are_not_the_identity_without_it():
    torch.manual_seed(0)
    backbone, _ = build_backbone("resnet50")
    backbone.eval()
    block = _identity_blocks(backbone)[0]
    x = torch.relu(torch.randn(2, block.conv1.in_channels, 5, 5))
    assert (block(x) - x).abs().max() > 1e-3


def test_mobilenet_has_no_residual_blocks_to_zero():
    backbone, _ = build_backbone("mobilenet_v3_small")
    assert zero_init_residual(backbone) == 0


@pytest.mark.parametrize(
    "arch, pretrained, expected",
    [
        ("resnet50", None, True),
        ("resnet101", None, True),
        ("resnet152", None, True),
        ("resnet18", None, False),
        ("resnet34", None, False),
        ("mobilenet_v3_large", None, False),
        ("resnet50", "weights.pth", False),
    ],
)
def test_zero_init_residual_default_is_on_only_for_deep_resnets_from_scratch(arch, pretrained, expected):
    assert TrainOptions(arch=arch, pretrained=pretrained).zero_init_residual is expected
    assert TrainOptions(arch=arch, pretrained=pretrained, zero_init_residual=not expected).zero_init_residual is (
        not expected
    )


def test_runs_recorded_before_the_option_existed_count_as_trained_without_it(tmp_path):
    old = TrainOptions(data="d", out=str(tmp_path), arch="resnet50").to_dict()
    del old["zero_init_residual"]  # what a run written by the older trainer holds
    (tmp_path / "history.json").write_text(json.dumps({"options": old}))
    assert TrainOptions.from_dict(old).zero_init_residual is False
    with pytest.raises(UserError, match="zero_init_residual False"):
        _check_reusable(tmp_path, TrainOptions(data="d", out=str(tmp_path), arch="resnet50"))
    _check_reusable(tmp_path, TrainOptions(data="d", out=str(tmp_path), arch="resnet50", zero_init_residual=False))


def test_zero_init_coupled_classifier_cannot_see_the_detector():
    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3)).eval()
    x = torch.randn(2, 3, 64, 64)
    assert zero_init_coupled_weights(model)
    before = model(x).logits
    with torch.no_grad():
        model.detector.weight.normal_(0.0, 1.0)  # a different sentiment map M
    after = model(x)
    torch.testing.assert_close(after.logits, before)
    assert model.classifier.weight[:, : model.num_features].abs().sum() > 0  # the GAP(F) half is kept


def test_zero_init_coupled_leaves_models_without_a_coupled_half_alone():
    cam = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, head="cam"))
    weights = cam.classifier.weight.clone()
    assert not zero_init_coupled_weights(cam)
    torch.testing.assert_close(cam.classifier.weight, weights)
