"""Training speed of WSCNet against CAM from scratch: the natural scene of the generator, the
logit split of the diagnostics, the validation curves and epoch budget of the ablation."""

import json
import math

import numpy as np
import pytest
import torch

from wscnet.ablation import epochs_to_reach, validation_curves, write_validation_curves
from wscnet.errors import UserError
from wscnet.model import WSCNet, WSCNetConfig
from wscnet.synth import SynthConfig, render
from wscnet.training.diagnostics import logit_halves


def test_natural_scene_has_a_soft_map_of_one_object_and_salient_distractors():
    for label in range(6):
        image, gt = render(seed=2, label=label, number=label, size=128, scene="natural")
        again, _ = render(seed=2, label=label, number=label, size=128, scene="natural")
        assert np.array_equal(image, again) and image.shape == (128, 128, 3)
        assert gt.max() >= 200 and ((gt > 0) & (gt < 255)).sum() > 20  # a soft rim, not a 0/255 mask
        ys, xs = np.nonzero(gt > 127)
        side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        assert 0.12 * 128 <= side <= 0.45 * 128  # blob of radius ~0.78 in a 20-45 % box
        assert image[gt > 200].astype(float).std(axis=0).max() > 30  # the class texture has contrast
    with pytest.raises(UserError, match="--scene must be one of"):
        SynthConfig(scene="jungle")


def test_logit_halves_split_the_classifier_by_hand():
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=1))
    n = model.num_features
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[0, 0] = 2.0  # global half: class 0 reads feature 0
        model.classifier.weight[1, n] = 3.0  # coupled half: class 1 reads feature 0 of M∘F
    features = torch.zeros(1, n, 2, 2)
    features[0, 0] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # GAP = 1
    sentiment_map = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])  # GAP(M∘F_0) = 4 / 4 = 1
    halves = logit_halves(model, features, sentiment_map)
    assert halves == {"logit_global": pytest.approx(2.0), "logit_coupled": pytest.approx(3.0)}
    cam = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, head="cam"))
    assert logit_halves(cam, features, sentiment_map) == {}  # no coupled half


def _history(folder, accuracies, fs):
    folder.mkdir(parents=True)
    epochs = [{"epoch": i + 1, **({} if a is None else {"val_accuracy": a, "val_detection_f": f})}
              for i, (a, f) in enumerate(zip(accuracies, fs))]
    (folder / "history.json").write_text(json.dumps({"epochs": epochs}))
    return folder


def test_epochs_to_reach_95_percent_of_the_final_value():
    assert epochs_to_reach([0.2, 0.5, 0.76, 0.7, 0.8]) == 3  # 0.95 · 0.8 = 0.76
    assert epochs_to_reach([0.9, 0.5, 1.0]) == 3  # 0.9 < 0.95: only the last one
    assert epochs_to_reach([0.95, math.nan, 1.0]) == 1
    assert epochs_to_reach([0.5, math.nan]) is None  # the last epoch was not validated


def test_validation_curves_mean_over_seeds_and_the_speed_table(tmp_path):
    a = _history(tmp_path / "s/cam/seed0", [0.2, 0.4, 0.8], [0.1, 0.2, 0.3])
    b = _history(tmp_path / "s/cam/seed1", [0.4, 0.8, 0.6], [0.3, 0.2, 0.1])
    curves = validation_curves([a, b])
    assert curves["val_accuracy"] == pytest.approx([0.3, 0.6, 0.7])  # 0.95 · 0.7 = 0.665: epoch 3
    assert curves["val_detection_f"] == pytest.approx([0.2, 0.2, 0.2])
    w = _history(tmp_path / "s/w/seed0", [None, 0.9, 0.94], [None, 0.4, 0.5])
    assert math.isnan(validation_curves([w])["val_accuracy"][0])
    runs = [{"set": "s", "recipe": "scratch", "variant": "cam", "run": str(d)} for d in (a, b)]
    runs.append({"set": "s", "recipe": "scratch", "variant": "wscnet-k4", "run": str(w)})
    table = write_validation_curves(tmp_path, runs, at_epoch=2)
    assert "| s | cam (scratch) | 2 | 0.600 | 0.700 | 0.200 | 3 |" in table
    assert "| s | wscnet-k4 (scratch) | 1 | 0.900 | 0.940 | 0.500 | 2 |" in table  # 0.95 · 0.94 = 0.893
    assert (tmp_path / "curves-s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
