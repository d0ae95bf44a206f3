"""WSCNet equations (1), (3), (4), the CAM baseline and the joint loss, checked against direct loops."""

import itertools

import pytest
import torch

from wscnet.losses import wscnet_loss
from wscnet.maps import normalised_maps
from wscnet.model import COUPLINGS, WSCNet, WSCNetConfig, deploy_outputs
from wscnet.pool_map import MAP_WEIGHTS, POOLS, cross_spatial_pool_map

C, K, H, W = 3, 2, 3, 4


def loop_pool_map(fprime, k, pool, map_weight):
    """Eq. (1) and (3) written out one number at a time."""
    n, kc, h, w = fprime.shape
    c_count = kc // k
    v = torch.zeros(n, c_count)
    for b, c in itertools.product(range(n), range(c_count)):
        total = 0.0
        for i in range(k):
            fmap = fprime[b, c * k + i]
            total += fmap.max() if pool == "max" else fmap.sum() / (h * w)
        v[b, c] = total / k
    m = torch.zeros(n, h, w)
    for b in range(n):
        weights = torch.softmax(v[b], 0) if map_weight == "softmax" else v[b] / c_count
        for c in range(c_count):
            mean_map = sum(fprime[b, c * k + i] for i in range(k)) / k
            m[b] += weights[c] * mean_map
    return v, m


@pytest.mark.parametrize("pool,map_weight", itertools.product(POOLS, MAP_WEIGHTS))
def test_cross_spatial_pool_map_matches_loop(pool, map_weight):
    torch.manual_seed(0)
    fprime = torch.randn(2, K * C, H, W)
    v, m = cross_spatial_pool_map(fprime, K, pool, map_weight)
    v_ref, m_ref = loop_pool_map(fprime, K, pool, map_weight)
    assert v.shape == (2, C) and m.shape == (2, H, W)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(m, m_ref)


def test_groups_are_consecutive_channels():
    # Only channels 2..3 (class 1, k=2) are large: class 1 must win v and dominate M.
    fprime = torch.zeros(1, K * C, H, W)
    fprime[0, 2:4, 1, 2] = 10.0
    v, m = cross_spatial_pool_map(fprime, K, "max", "softmax")
    assert v.argmax().item() == 1
    assert m[0].flatten().argmax().item() == 1 * W + 2


def tiny_model(**overrides):
    torch.manual_seed(0)
    config = WSCNetConfig(arch="resnet18", num_classes=C, **{"k": K, **overrides})
    return WSCNet(config).eval()


@pytest.mark.parametrize("pool,map_weight,coupling", itertools.product(POOLS, MAP_WEIGHTS, COUPLINGS))
def test_forward_matches_equations(pool, map_weight, coupling):
    model = tiny_model(pool=pool, map_weight=map_weight, coupling=coupling)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = model(x)
        features = model.backbone(x)  # 2×512×3×3
        v_ref, m_ref = loop_pool_map(model.detector(features), K, pool, map_weight)
        n, ch = features.shape[:2]
        gap = torch.zeros(n, ch)
        local = torch.zeros(n, ch)
        for b, j in itertools.product(range(n), range(ch)):
            gap[b, j] = features[b, j].sum() / features[b, j].numel()
            local[b, j] = (m_ref[b] * features[b, j]).sum() / features[b, j].numel()
        d = {"both": torch.cat([gap, local], 1), "local": local, "none": gap}[coupling]
        logits_ref = d @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(out.det_logits, v_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.sentiment_map, m_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits, logits_ref, rtol=1e-4, atol=1e-5)
    assert model.classifier.in_features == (2 * ch if coupling == "both" else ch)


def test_cam_is_class_activation_map_of_predicted_class():
    model = tiny_model(head="cam")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = model(x)
        features = model.backbone(x)
    assert not hasattr(model, "detector")
    for b in range(2):
        pred = out.logits[b].argmax()
        cam = sum(model.classifier.weight[pred, j] * features[b, j] for j in range(features.shape[1]))
        torch.testing.assert_close(out.sentiment_map[b], cam, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.det_logits, out.logits)


def backbone_grad_norm(model):
    return sum(p.grad.abs().sum().item() for p in model.backbone.parameters() if p.grad is not None)


@pytest.mark.parametrize("branch", ["det", "cls"])
def test_each_loss_sends_gradients_into_the_backbone(branch):
    model = tiny_model().train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([0, 2])
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out.det_logits if branch == "det" else out.logits, target)
    loss.backward()
    assert backbone_grad_norm(model) > 0
    if branch == "det":
        assert model.classifier.weight.grad is None  # the detection loss never reaches the FC
    else:
        # Coupling: the classification loss also trains the detector through M, Eq. (4).
        assert model.detector.weight.grad.abs().sum() > 0


def test_no_coupling_keeps_classification_loss_off_the_detector():
    model = tiny_model(coupling="none").train()
    out = model(torch.randn(2, 3, 64, 64))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1])).backward()
    assert model.detector.weight.grad is None


def test_joint_loss_is_sum_of_both_cross_entropies():
    model = tiny_model()
    target = torch.tensor([1, 2])
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    total, parts = wscnet_loss(out, target)
    f = torch.nn.functional.cross_entropy
    torch.testing.assert_close(total, f(out.logits, target) + f(out.det_logits, target))
    assert set(parts) == {"loss_cls", "loss_det"}
    cam_total, cam_parts = wscnet_loss(out, target, head="cam")
    torch.testing.assert_close(cam_total, f(out.logits, target))
    assert set(cam_parts) == {"loss_cls"}


def test_parameter_groups_split_backbone_from_new_layers():
    model = tiny_model()
    backbone, new = model.parameter_groups()
    assert {id(p) for p in backbone} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in new} == {id(p) for p in (*model.detector.parameters(), *model.classifier.parameters())}


def test_deploy_outputs_and_normalised_maps():
    model = tiny_model()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    probs, det, smap = deploy_outputs(out)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    torch.testing.assert_close(det.sum(1), torch.ones(2))
    assert smap.shape == (2, 1, 2, 2)
    maps = normalised_maps(smap, (64, 64))
    assert maps.shape == (2, 64, 64)
    for b in range(2):
        assert maps[b].min().item() == pytest.approx(0.0, abs=1e-6)
        assert maps[b].max().item() == pytest.approx(1.0, abs=1e-6)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="coupling"):
        WSCNetConfig(coupling="sideways")
    with pytest.raises(ValueError, match="k must"):
        WSCNetConfig(k=0)
    with pytest.raises(ValueError, match="unknown model config"):
        WSCNetConfig.from_dict({"arch": "resnet18", "depth": 3})
