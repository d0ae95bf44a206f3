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
    with torch.no_grad():
        cam.classifier.weight.zero_()
        cam.classifier.weight[1, 0] = -4.0
    assert logit_halves(cam, features, sentiment_map) == {"logit_global": pytest.approx(4.0)}  # no coupled half
    local = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, coupling="local"))
    assert logit_halves(local, features, sentiment_map) == {}


def _history(folder, accuracies, fs):
    folder.mkdir(parents=True)
    epochs = [
        {"epoch": i + 1, **({} if a is None else {"val_accuracy": a, "val_detection_f": f})}
        for i, (a, f) in enumerate(zip(accuracies, fs))
    ]
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


def _stage_model(cam_stage_epochs: float = 1.0):
    from wscnet.training import TrainOptions
    from wscnet.training.head_warmup import CamStage, zero_init_coupled_weights

    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=2))
    zero_init_coupled_weights(model)
    options = TrainOptions(head="wscnet", grad_clip=2.0, cam_stage_epochs=cam_stage_epochs)
    return model, CamStage(model, options, steps_per_epoch=4)


def _grads(model, loss_of_output, images, labels):
    model.zero_grad(set_to_none=True)
    loss_of_output(model(images), labels).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_cam_stage_trains_the_backbone_with_the_classification_loss_alone():
    from wscnet.losses import wscnet_loss

    model, stage = _stage_model()
    model.train()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    stage.apply(step=3)  # 1 epoch of 4 steps: steps 0-3 are the stage
    joint = _grads(model, lambda out, y: wscnet_loss(out, y)[0], images, labels)
    stage.scale_classifier_gradient()
    n = model.num_features
    assert model.classifier.weight.grad[:, n:].abs().max() == 0  # the coupled half is held
    cls_only = _grads(model, lambda out, y: torch.nn.functional.cross_entropy(out.logits, y), images, labels)
    backbone = [name for name in cls_only if name.startswith("backbone.")]
    assert backbone and all(torch.allclose(joint[k], cls_only[k], atol=1e-6) for k in backbone)
    assert joint["detector.weight"].abs().max() > 0  # the detector still learns, from L_dec
    stage.apply(step=4)  # after the stage: the detection loss reaches the backbone again
    after = _grads(model, lambda out, y: wscnet_loss(out, y)[0], images, labels)
    assert not all(torch.allclose(after[k], cls_only[k], atol=1e-6) for k in backbone)


def test_cam_stage_clips_the_cam_part_and_the_detector_apart():
    model, stage = _stage_model()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    first_backbone = next(model.backbone.parameters())
    first_backbone.grad.view(-1)[0] = 6.0
    model.detector.weight.grad.view(-1)[0] = 8.0
    stage.apply(step=0)
    stage.clip(threshold=10.0)  # in the stage: each part at grad_clip = 2 on its own
    assert first_backbone.grad.view(-1)[0].item() == pytest.approx(2.0)
    assert model.detector.weight.grad.view(-1)[0].item() == pytest.approx(2.0)
    first_backbone.grad.view(-1)[0] = 6.0
    model.detector.weight.grad.view(-1)[0] = 8.0
    stage.apply(step=4)
    stage.clip(threshold=5.0)  # after it: one global norm of 10, clipped to 5
    assert first_backbone.grad.view(-1)[0].item() == pytest.approx(3.0)
    assert model.detector.weight.grad.view(-1)[0].item() == pytest.approx(4.0)


def test_cam_stage_leaves_eval_mode_alone_and_is_refused_beyond_the_run(tmp_path):
    from wscnet.training import TrainOptions

    model, stage = _stage_model()
    stage.apply(step=0)
    model.eval()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    model(x).det_logits.sum().backward()
    assert x.grad is not None and x.grad.abs().max() > 0  # eval: the detector reads F, not a copy
    (tmp_path / "d").mkdir()
    options = TrainOptions(data=str(tmp_path / "d"), out=str(tmp_path / "o"), epochs=3, cam_stage_epochs=3)
    with pytest.raises(UserError, match="--cam-stage-epochs must be in"):
        options.validate()
    options.cam_stage_epochs, options.det_backbone_grad = 0, 1.5
    with pytest.raises(UserError, match="--det-backbone-grad must be in"):
        options.validate()


def test_cam_stage_in_a_run_keeps_the_detection_gradient_off_the_backbone(make_roi_set, tmp_path):
    from wscnet.training import TrainOptions, train
    from wscnet.training.recipes import apply_recipe

    options = apply_recipe(
        TrainOptions(
            data=str(make_roi_set(4, 64, 0)),
            out=str(tmp_path / "run"),
            arch="resnet18",
            img_size=64,
            batch_size=4,
            epochs=2,
            workers=0,
            device="cpu",
            max_train_batches=2,
            diagnostics_every=1,
            cam_stage_epochs=1,
        ),
        "scratch",
    )
    train(options)
    rows = [json.loads(line) for line in (tmp_path / "run" / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["grad_feat_det"] for r in rows[:2]] == [0.0, 0.0]  # steps 0, 1: the stage
    assert all(r["grad_feat_det"] > 0 for r in rows[2:])
    assert rows[0]["logit_coupled"] == 0.0 and rows[2]["logit_coupled"] == 0.0  # held at 0 through step 1
    assert rows[3]["logit_coupled"] > 0  # released at step 2


def test_det_backbone_grad_scales_the_detection_gradient_at_the_backbone_only():
    from wscnet.training import TrainOptions
    from wscnet.training.head_warmup import CamStage

    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=2)).train()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])

    def det_loss_grads():
        model.zero_grad(set_to_none=True)
        out = model(images)
        torch.nn.functional.cross_entropy(out.det_logits, labels).backward()
        first_backbone = next(model.backbone.parameters())
        return out.det_logits.detach(), first_backbone.grad.clone(), model.detector.weight.grad.clone()

    full_v, full_backbone, full_detector = det_loss_grads()
    CamStage(model, TrainOptions(head="wscnet", det_backbone_grad=0.25), steps_per_epoch=4).apply(step=0)
    v, backbone, detector = det_loss_grads()
    assert torch.equal(v, full_v)  # the forward values are the paper's
    assert torch.allclose(backbone, 0.25 * full_backbone, atol=1e-7)  # a quarter reaches the backbone
    assert torch.allclose(detector, full_detector)  # the detector's own gradient is whole


def test_hold_coupled_epochs_hold_the_coupled_half_but_not_the_detection_gradient():
    from wscnet.losses import wscnet_loss
    from wscnet.training import TrainOptions
    from wscnet.training.head_warmup import CamStage

    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=2)).train()
    stage = CamStage(model, TrainOptions(head="wscnet", hold_coupled_epochs=0.5), steps_per_epoch=4)
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    n = model.num_features
    for step, held in ((1, True), (2, False)):  # half an epoch of 4 steps: steps 0 and 1
        stage.apply(step)
        model.zero_grad(set_to_none=True)
        out = model(images)
        features = model.backbone(images)
        (dec_at_f,) = torch.autograd.grad(
            torch.nn.functional.cross_entropy(model.detector(features).mean((2, 3)), labels), features
        )
        assert dec_at_f.abs().max() > 0  # the detector's gradient reaches F: no detach while holding
        wscnet_loss(out, labels)[0].backward()
        stage.scale_classifier_gradient()
        assert (model.classifier.weight.grad[:, n:].abs().max() == 0) == held


def test_speed_recipes_are_scratch_with_one_change_each():
    from wscnet.training import TrainOptions
    from wscnet.training.recipes import RECIPES, apply_recipe

    scratch = apply_recipe(TrainOptions(), "scratch-warmup").to_dict()
    expected = {
        "scratch-staged": {"cam_stage_epochs": 3.0},
        "scratch-held": {"hold_coupled_epochs": 3.0},
        "scratch-cam-clip": {"clip_per_loss": False},
        "scratch-staged-cam-clip": {"cam_stage_epochs": 3.0, "clip_per_loss": False},
    }
    for name, change in expected.items():
        options = apply_recipe(TrainOptions(), name).to_dict()
        differs = {k: v for k, v in options.items() if scratch[k] != v and k != "recipe"}
        assert differs == change and name in RECIPES
    explicit = apply_recipe(TrainOptions(cam_stage_epochs=5.0), "scratch-staged")
    assert explicit.cam_stage_epochs == 5.0  # an explicit flag wins over the recipe
