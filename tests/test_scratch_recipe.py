"""The from-scratch recipe: head warm-up ramps, the GAP->GMP pooling blend that only
training sees, recipe presets, the diagnostics log, and salient distractors in the generator."""

import json
import math

import numpy as np
import pytest
import torch

from wscnet.errors import UserError
from wscnet.model import WSCNet, WSCNetConfig, WSCNetOutput
from wscnet.pool_map import cross_spatial_pool_map
from wscnet.synth import render
from wscnet.training import TrainOptions, train
from wscnet.training.diagnostics import _map_statistics
from wscnet.training.head_warmup import HeadWarmup
from wscnet.training.recipes import apply_recipe


def test_warmup_ramps_reach_the_paper_settings_and_stay_there():
    options = TrainOptions(pool_warmup_epochs=2, det_warmup_epochs=4, det_weight_start=0.0, det_weight=1.0)
    warm = HeadWarmup(options, steps_per_epoch=10)  # pool over 20 steps, det weight over 40
    assert [warm.max_share(s) for s in (0, 5, 10, 20, 500)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert [warm.det_weight(s) for s in (0, 10, 20, 40, 41)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    plain = HeadWarmup(TrainOptions(), steps_per_epoch=10)  # no warm-up: the paper from step 0
    assert plain.max_share(0) == 1.0 and plain.det_weight(0) == 1.0 and not plain.active


def test_pool_blend_is_gap_at_zero_gmp_at_one_and_ignored_in_eval():
    fprime = torch.zeros(1, 2, 2, 2)  # k=1, C=2
    fprime[0, 0] = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # class 0: max 4, mean 1
    fprime[0, 1] = torch.tensor([[2.0, 2.0], [2.0, 2.0]])  # class 1: max 2, mean 2
    for share, expected in ((1.0, [4.0, 2.0]), (0.0, [1.0, 2.0]), (0.5, [2.5, 2.0])):
        v, _ = cross_spatial_pool_map(fprime, 1, "max", "softmax", share)
        assert torch.allclose(v, torch.tensor([expected]))
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=1))
    model.pool_map.training_max_share = 0.0
    model.pool_map.eval()
    v_eval, _ = model.pool_map(fprime)
    model.pool_map.train()
    v_train, _ = model.pool_map(fprime)
    assert torch.allclose(v_eval, torch.tensor([[4.0, 2.0]])) and torch.allclose(v_train, torch.tensor([[1.0, 2.0]]))


def test_recipe_fills_defaults_but_explicit_flags_win():
    options = apply_recipe(TrainOptions(lr=0.05), "scratch")
    assert options.lr == 0.05  # given explicitly
    assert options.head_lr == 0.02 and options.grad_clip == 2.0 and options.lr_schedule == "cosine"
    assert options.det_weight_start == 0.0 and options.pool_warmup_epochs > 0 and options.recipe == "scratch"
    assert options.zero_init_coupled and not apply_recipe(TrainOptions(), "scratch-flags").zero_init_coupled
    assert options.detach_coupled_map and not apply_recipe(TrainOptions(), "scratch-flags").detach_coupled_map
    paper = apply_recipe(TrainOptions(), "paper")
    assert paper.lr == 1e-3 and paper.pool_warmup_epochs == 0 and not paper.zero_init_coupled
    assert not paper.detach_coupled_map
    with pytest.raises(UserError, match="--recipe must be one of"):
        apply_recipe(TrainOptions(), "magic")


def _classification_loss_gradients(detach: bool, train_mode: bool = True) -> dict[str, torch.Tensor | None]:
    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3))
    model.train(train_mode)
    model.training_detach_map = detach
    out = model(torch.randn(2, 3, 64, 64))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2])).backward()  # L_cls alone
    return {"detector": model.detector.weight.grad, "classifier": model.classifier.weight.grad}


def test_detached_map_keeps_the_classification_loss_out_of_the_detector():
    # L_cls reaches the detector only through M in GAP(M∘F): with M detached nothing reaches it,
    # while the classifier (both halves) still learns.
    joined = _classification_loss_gradients(detach=False)
    assert joined["detector"] is not None and joined["detector"].abs().sum() > 0
    detached = _classification_loss_gradients(detach=True)
    assert detached["detector"] is None or detached["detector"].abs().sum() == 0
    n = detached["classifier"].shape[1] // 2
    assert detached["classifier"][:, :n].abs().sum() > 0 and detached["classifier"][:, n:].abs().sum() > 0


def test_detached_map_changes_no_output_of_the_model():
    torch.manual_seed(0)
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3))
    x = torch.randn(2, 3, 64, 64)
    for mode in (True, False):  # the forward values are the paper's in training and in eval
        model.train(mode)
        torch.manual_seed(1)
        plain = model(x)
        model.training_detach_map = True
        torch.manual_seed(1)
        detached = model(x)
        model.training_detach_map = False
        for a, b in zip(plain, detached):
            torch.testing.assert_close(a, b)
    assert _classification_loss_gradients(detach=True, train_mode=False)["detector"].abs().sum() > 0


def test_map_statistics_on_hand_made_outputs():
    flat = torch.ones(1, 3, 3)
    uniform = WSCNetOutput(torch.zeros(1, 4), torch.zeros(1, 4), flat)
    features = torch.ones(1, 5, 3, 3)
    stats = _map_statistics(uniform, features)
    assert stats["entropy_v"] == pytest.approx(1.0)  # softmax of equal scores: uniform
    assert stats["coupling_scale"] == pytest.approx(1.0)  # M = 1 everywhere: local half = global half
    peaked = torch.zeros(1, 3, 3)
    peaked[0, 1, 1] = 9.0  # mean 1, sample std 3, max 9: contrast (9 - 1) / (1 + 3) = 2
    sure = WSCNetOutput(torch.zeros(1, 4), torch.tensor([[50.0, 0.0, 0.0, 0.0]]), peaked)
    stats = _map_statistics(sure, None)
    assert stats["entropy_v"] < 1e-6 and stats["map_contrast"] == pytest.approx(2.0)


def test_diagnostics_log_during_a_warm_up_run(make_roi_set, tmp_path):
    data = make_roi_set(4, 64, 0)
    options = apply_recipe(
        TrainOptions(
            data=str(data),
            out=str(tmp_path / "run"),
            arch="resnet18",
            img_size=64,
            batch_size=4,
            epochs=2,
            workers=0,
            device="cpu",
            max_train_batches=2,
            diagnostics_every=1,
        ),
        "scratch",
    )
    options.pool_warmup_epochs = options.det_warmup_epochs = 2
    train(options)
    rows = [json.loads(line) for line in (tmp_path / "run" / "diagnostics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [r["max_share"] for r in rows] == [0.0, 0.25, 0.5, 0.75]  # 4 steps of warm-up
    for r in rows:
        assert 0.0 <= r["entropy_v"] <= 1.0 + 1e-6 and 0.0 < r["clipped"] <= 1.0
        assert r["grad_feat_cls"] > 0 and r["grad_total"] == pytest.approx(
            math.sqrt(r["grad_backbone"] ** 2 + r["grad_detector"] ** 2 + r["grad_classifier"] ** 2)
        )
    assert rows[0]["grad_feat_det"] > 0  # measured even while its weight in the loss is 0


def test_salient_distractors_keep_the_target_and_add_textured_objects():
    for label in range(6):
        plain, gt_plain = render(seed=4, label=label, number=1, size=128)
        salient, gt_salient = render(seed=4, label=label, number=1, size=128, distractors="salient")
        assert np.array_equal(gt_plain, gt_salient)  # same background and target, same place
        changed = (np.abs(plain.astype(int) - salient.astype(int)).sum(axis=2) > 60) & (gt_plain == 0)
        assert changed.mean() > 0.025  # an object-sized distractor: a triangle in a 25 % box is 3 %
        inside = salient[changed].astype(float)
        assert inside.std(axis=0).max() > 30  # a two-colour texture, like the target's
    with pytest.raises(ValueError, match="distractors must be one of"):
        render(seed=4, label=0, number=1, size=64, distractors="loud")


def test_diagnostics_summary_means_per_epoch_and_over_runs(tmp_path):
    from wscnet.training import diagnostics_summary as summary

    def run(name, rows, accuracies):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "history.json").write_text(json.dumps({"epochs": [{"train_accuracy": a} for a in accuracies]}))
        return folder

    a = run(
        "a",
        [
            {"epoch": 1, "clipped": 0.2, "grad_backbone": 10.0, "entropy_v": 1.0, "coupling_scale": 0.1},
            {"epoch": 1, "clipped": 0.4, "grad_backbone": 6.0, "entropy_v": 0.8, "coupling_scale": 0.3},
            {"epoch": 2, "clipped": 1.0, "grad_backbone": 2.0, "entropy_v": 0.5, "coupling_scale": 1.0},
        ],
        [0.25, 0.5],
    )
    b = run(
        "b",
        [{"epoch": 1, "clipped": 0.6, "grad_backbone": 4.0, "entropy_v": 0.6, "coupling_scale": 0.2}],
        [0.75, 0.9, 0.95],
    )
    cam = run("cam", [{"epoch": 1, "clipped": 0.5, "grad_backbone": 4.0}], [0.5])
    curves = summary.run_curves(a)
    assert curves["clipped"] == pytest.approx([0.3, 1.0]) and curves["entropy_v"] == pytest.approx([0.9, 0.5])
    both = summary.group_curves([a, b])  # cut to b's one logged epoch, then averaged
    assert both["train_accuracy"] == pytest.approx([0.5]) and both["grad_backbone"] == pytest.approx([6.0])
    assert both["coupling_scale"] == pytest.approx([0.2])
    cam_curves = summary.group_curves([cam])
    assert math.isnan(cam_curves["entropy_v"][0]) and cam_curves["clipped"] == [0.5]
    table = summary.markdown({"wscnet": both, "cam": cam_curves}, {"wscnet": 2, "cam": 1})
    assert "| wscnet (2) | 1 | 0.5 | - | 0.45 | 6 | 0.75 | 0.2 | - | - |" in table  # no loss, no logit halves logged
    assert "| cam (1) | 1 | 0.5 | - | 0.5 | 4 | - | - | - | - |" in table
    summary.write_chart(tmp_path / "d.png", {"set": {"wscnet": both, "cam": cam_curves}})
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detection_label_smoothing_gives_the_hand_computed_loss():
    from wscnet.losses import wscnet_loss

    # classifier logits 0 (L_cls = ln 3); pooled detection scores (2, 0, 0) for class 0.
    out = WSCNetOutput(torch.zeros(1, 3), torch.tensor([[2.0, 0.0, 0.0]]), torch.zeros(1, 2, 2))
    target = torch.tensor([0])
    log_z = math.log(math.e**2 + 2)  # log-sum-exp of the scores
    paper, _ = wscnet_loss(out, target, det_weight=0.5)
    assert paper.item() == pytest.approx(math.log(3) + 0.5 * (log_z - 2.0), rel=1e-6)
    # ε = 0.3 over 3 classes: targets (0.8, 0.1, 0.1); -Σ q log p = log Z - 0.8 · 2
    smoothed, parts = wscnet_loss(out, target, det_weight=0.5, det_label_smoothing=0.3)
    assert parts["loss_det"] == pytest.approx(log_z - 1.6, rel=1e-6)
    assert smoothed.item() == pytest.approx(math.log(3) + 0.5 * (log_z - 1.6), rel=1e-6)
    cam, _ = wscnet_loss(out, target, head="cam", det_label_smoothing=0.3)  # no detection loss
    assert cam.item() == pytest.approx(math.log(3), rel=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_detection_label_smoothing_outside_0_1_is_refused(tmp_path, value):
    options = TrainOptions(data=str(tmp_path), out=str(tmp_path / "run"), det_label_smoothing=value)
    with pytest.raises(UserError, match="--det-label-smoothing must be in"):
        options.validate()
    assert not (tmp_path / "run").exists()


def _recipe_change(name: str, base: str) -> dict:
    """The fields (other than its name) that recipe ``name`` sets differently from recipe ``base``."""
    options, reference = (apply_recipe(TrainOptions(), r).to_dict() for r in (name, base))
    return {k: v for k, v in options.items() if reference[k] != v and k != "recipe"}


def test_the_scratch_default_is_the_warm_up_with_a_slow_coupled_start_and_a_late_feature_share():
    assert _recipe_change("scratch", "scratch-warmup") == {
        "classifier_grad_scale": 0.5,
        "coupled_grad_scale": 0.25,
        "coupled_slow_epochs": 6.0,
        "coupled_feature_grad": 4.0,
        "coupled_feature_brake": 2.0,
        "coupled_feature_delay": 2.0,
    }
    assert _recipe_change("scratch", "scratch-slow-weights-late") == {}
    # a short run keeps its windows: slow all run, the feature share never starts
    TrainOptions(data=".", out="x", epochs=2, **_recipe_change("scratch", "paper")).validate()


def test_coupled_recipes_change_only_their_fields_and_clip_budget():
    expected = {
        "scratch-held-cam-clip": {"hold_coupled_epochs": 3.0, "clip_per_loss": False},
        "scratch-slow-coupled": {"coupled_grad_scale": 0.25},
        "scratch-slow-classifier": {"classifier_grad_scale": 0.5},
        "scratch-slow-both": {"classifier_grad_scale": 0.5, "coupled_grad_scale": 0.25},
        "scratch-slow-both-eighth": {"classifier_grad_scale": 0.5, "coupled_grad_scale": 0.125},
    }
    for name, change in expected.items():
        assert _recipe_change(name, "scratch-warmup") == change
    # after the 2-epoch ramp (det weight 1): the per-loss budget is 2 · (1 + 1), CAM's budget is 2
    held = HeadWarmup(apply_recipe(TrainOptions(), "scratch-held-cam-clip"), steps_per_epoch=10)
    slow = HeadWarmup(apply_recipe(TrainOptions(), "scratch-slow-coupled"), steps_per_epoch=10)
    assert [held.grad_clip(s) for s in (0, 10, 20, 99)] == [2.0, 2.0, 2.0, 2.0]
    assert [slow.grad_clip(s) for s in (0, 10, 20, 99)] == [2.0, 3.0, 4.0, 4.0]
    with pytest.raises(UserError, match="--coupled-grad-scale must be in"):
        TrainOptions(data=".", out="x", coupled_grad_scale=1.5).validate()


def test_classifier_and_coupled_grad_scales_multiply_the_classifier_gradient_alone():
    from wscnet.training.head_warmup import CamStage

    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=1))
    n = model.num_features
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    options = TrainOptions(head="wscnet", classifier_grad_scale=0.5, coupled_grad_scale=0.25, hold_coupled_epochs=1.0)
    stage = CamStage(model, options, steps_per_epoch=2)  # held for steps 0 and 1
    stage.apply(step=1)
    stage.scale_classifier_gradient()
    assert model.classifier.weight.grad[:, n:].abs().max() == 0 and torch.all(
        model.classifier.weight.grad[:, :n] == 0.5
    )
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    stage.apply(step=2)  # released: the coupled half gets 0.5 · 0.25, the global half and the bias 0.5
    stage.scale_classifier_gradient()
    grad = model.classifier.weight.grad
    assert torch.all(grad[:, n:] == 0.125) and torch.all(grad[:, :n] == 0.5)
    assert torch.all(model.classifier.bias.grad == 0.5)
    rest = [p for name, p in model.named_parameters() if not name.startswith("classifier.")]
    assert rest and all(torch.all(p.grad == 1.0) for p in rest)  # backbone and detector untouched
    cam = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, head="cam"))
    cam.classifier.weight.grad = torch.ones_like(cam.classifier.weight)
    cam_options = TrainOptions(head="cam", classifier_grad_scale=0.5, coupled_grad_scale=0.25)
    CamStage(cam, cam_options, steps_per_epoch=2).scale_classifier_gradient()
    assert torch.all(cam.classifier.weight.grad == 1.0)  # CAM has no coupled half: untouched


def test_slow_both_recipe_steps_the_coupled_half_at_an_eighth_before_the_shared_clip():
    from wscnet.training.head_warmup import CamStage

    assert _recipe_change("scratch-slow-both", "scratch-slow-classifier") == {"coupled_grad_scale": 0.25}
    options = apply_recipe(TrainOptions(), "scratch-slow-both")
    assert [HeadWarmup(options, steps_per_epoch=10).grad_clip(s) for s in (0, 10, 20)] == [2.0, 3.0, 4.0]
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=4))
    n = model.num_features  # 512 weights per class on each half
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.classifier.weight.grad.fill_(2.0)
    model.classifier.bias.grad.fill_(2.0)
    stage = CamStage(model, options, steps_per_epoch=10)
    stage.apply(step=0)  # no hold in this recipe: both scales from the first step
    stage.scale_classifier_gradient()
    weight = model.classifier.weight.grad
    assert torch.all(weight[:, :n] == 1.0) and torch.all(weight[:, n:] == 0.25)  # 2 · 0.5 and 2 · 0.5 · 0.25
    assert torch.all(model.classifier.bias.grad == 1.0)
    # the clip then acts on the scaled gradient: norm² = 3·512·(1 + 1/16) + 3 = 1635, threshold 4
    stage.clip(4.0)
    factor = 4.0 / math.sqrt(1635.0)
    assert weight[0, 0].item() == pytest.approx(factor) and weight[0, n].item() == pytest.approx(0.25 * factor)


def _two_half_classifier(coupled: tuple[float, float] = (12.0, 16.0)):
    """A 2-class WSCNet in training mode whose classifier reads feature 0 of each half, and the
    descriptor with a 1 there: logits (3, 4) from GAP(F), norm 5, and ``coupled`` from GAP(M∘F)."""
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=1)).train()
    n = model.num_features
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[:, 0] = torch.tensor([3.0, 4.0])
        model.classifier.weight[:, n] = torch.tensor(coupled)
    descriptor = torch.zeros(1, 2 * n)
    descriptor[0, 0] = descriptor[0, n] = 1.0
    return model, descriptor


def _scaled_coupled_gradient(model, options: TrainOptions, descriptor: torch.Tensor):
    """A stage of ``options`` watches one training forward of the classifier on ``descriptor``, then
    scales a gradient of ones: (the GAP(F) half's, the GAP(M∘F) half's, the stage)."""
    from wscnet.training.head_warmup import CamStage

    stage = CamStage(model, options, steps_per_epoch=10)
    stage.apply(step=0)
    model.classifier(descriptor)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    stage.scale_classifier_gradient()
    grad = model.classifier.weight.grad
    return grad[0, 0].item(), grad[0, model.num_features].item(), stage


def test_coupled_brake_scales_the_coupled_half_by_the_squared_cap_over_ratio_only_above_the_cap():
    model, descriptor = _two_half_classifier()  # GAP(M∘F) logits (12, 16): norm 20
    n = model.num_features

    def braked_gradient(cap: float, coupled_input: float = 1.0) -> tuple[float, float, float]:
        options = TrainOptions(head="wscnet", classifier_grad_scale=0.5, coupled_logit_cap=cap)
        d = descriptor.clone()
        d[0, n] = coupled_input
        global_half, coupled_half, stage = _scaled_coupled_gradient(model, options, d)
        return global_half, coupled_half, stage.last_brake

    # ratio 20 / 5 = 4: cap 1 gives (1/4)² = 1/16, cap 2 gives (2/4)² = 1/4, on top of the 0.5
    assert braked_gradient(1.0) == pytest.approx((0.5, 0.5 / 16, 1 / 16))
    assert braked_gradient(2.0) == pytest.approx((0.5, 0.5 / 4, 1 / 4))
    assert braked_gradient(1.0, coupled_input=0.2) == pytest.approx((0.5, 0.5, 1.0))  # norm 4 < 5: no brake
    assert braked_gradient(0.0) == pytest.approx((0.5, 0.5, 1.0))  # cap 0: off
    assert _recipe_change("scratch-braked", "scratch-slow-classifier") == {"coupled_logit_cap": 1.0}
    with pytest.raises(UserError, match="--coupled-logit-cap must not be negative"):
        TrainOptions(data=".", out="x", coupled_logit_cap=-1.0).validate()


def test_coupled_input_brake_divides_the_coupled_half_by_its_input_ratio_to_the_power_only_above_one():
    model, _ = _two_half_classifier()
    n = model.num_features

    def braked_gradient(power: float, images: list[tuple[float, float]]) -> tuple[float, float, float]:
        """``images``: per image, the norm of its GAP(F) half and of its GAP(M∘F) half."""
        options = TrainOptions(head="wscnet", classifier_grad_scale=0.5, coupled_input_brake=power)
        descriptor = torch.zeros(len(images), 2 * n)
        for row, (glob, coupled) in enumerate(images):
            descriptor[row, 0], descriptor[row, 1] = 0.6 * glob, 0.8 * glob  # norm glob over two features
            descriptor[row, n] = coupled
        global_half, coupled_half, stage = _scaled_coupled_gradient(model, options, descriptor)
        return global_half, coupled_half, stage.last_input_brake

    # ratios 3 and 5: s = 4; P = 2 gives 1/16, P = 1 gives 1/4, on top of the classifier's 0.5
    assert braked_gradient(2.0, [(1.0, 3.0), (2.0, 10.0)]) == pytest.approx((0.5, 0.5 / 16, 1 / 16))
    assert braked_gradient(1.0, [(1.0, 3.0), (2.0, 10.0)]) == pytest.approx((0.5, 0.5 / 4, 1 / 4))
    # ratios 0.5 and 1.3: s = 0.9 < 1, no brake; P = 0: off whatever the ratio
    assert braked_gradient(2.0, [(2.0, 1.0), (1.0, 1.3)]) == pytest.approx((0.5, 0.5, 1.0))
    assert braked_gradient(0.0, [(1.0, 3.0), (2.0, 10.0)]) == pytest.approx((0.5, 0.5, 1.0))
    assert _recipe_change("scratch-even", "scratch-slow-classifier") == {"coupled_input_brake": 2.0}
    with pytest.raises(UserError, match="--coupled-input-brake must not be negative"):
        TrainOptions(data=".", out="x", coupled_input_brake=-1.0).validate()


def test_coupled_weight_cap_scales_the_coupled_weights_down_to_the_cap_after_the_step():
    from wscnet.training.head_warmup import CamStage

    def capped_column(cap: float, coupled: tuple[float, float]) -> list[float]:
        model, descriptor = _two_half_classifier(coupled)
        n = model.num_features
        stage = CamStage(model, TrainOptions(head="wscnet", coupled_weight_cap=cap), steps_per_epoch=10)
        model.classifier(descriptor)
        stage.cap_coupled_weights()
        assert model.classifier.weight[:, 0].tolist() == [3.0, 4.0]  # the GAP(F) half is never touched
        return model.classifier.weight[:, n].tolist()

    # coupled logits (12, 16), norm 20: cap 2 allows 10, so the weights are halved; cap 1 allows 5
    assert capped_column(2.0, (12.0, 16.0)) == pytest.approx([6.0, 8.0])
    assert capped_column(1.0, (12.0, 16.0)) == pytest.approx([3.0, 4.0])
    assert capped_column(2.0, (6.0, 8.0)) == pytest.approx([6.0, 8.0])  # norm 10 = the cap: kept
    assert capped_column(0.0, (12.0, 16.0)) == pytest.approx([12.0, 16.0])  # off
    assert _recipe_change("scratch-capped", "scratch-slow-classifier") == {"coupled_weight_cap": 2.0}
    with pytest.raises(UserError, match="--coupled-weight-cap must not be negative"):
        TrainOptions(data=".", out="x", coupled_weight_cap=-1.0).validate()


def test_coupled_feature_grad_passes_that_share_of_the_coupled_gradient_to_f_and_keeps_the_values():
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=1))
    n = model.num_features
    sentiment_map = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])  # M: 4 at one of 2×2 places

    def descriptor_and_gradient(share: float, training: bool = True):
        model.train(training)
        model.training_coupled_feature_grad = share
        features = torch.ones(1, n, 2, 2, requires_grad=True)
        d = model.coupled_descriptor(features, sentiment_map)
        d[:, n:].sum().backward()  # the coupled half only: dGAP(M∘F)/dF = M / 4, times the share
        return d.detach(), features.grad[0, 0]

    full, full_grad = descriptor_and_gradient(1.0)
    quarter, quarter_grad = descriptor_and_gradient(0.25)
    assert torch.equal(full, quarter) and full[0, n].item() == 1.0  # same values: GAP(M∘F) = 4 / 4
    assert torch.allclose(full_grad, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.allclose(quarter_grad, torch.tensor([[0.25, 0.0], [0.0, 0.0]]))
    _, none_grad = descriptor_and_gradient(0.0)
    assert torch.all(none_grad == 0)
    _, eval_grad = descriptor_and_gradient(0.25, training=False)  # eval and export never scale
    assert torch.allclose(eval_grad, full_grad)
    assert _recipe_change("scratch-quiet", "scratch-slow-classifier") == {"coupled_feature_grad": 0.25}
    _, four_grad = descriptor_and_gradient(4.0)  # above 1 it amplifies
    assert torch.allclose(four_grad, torch.tensor([[4.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(UserError, match="--coupled-feature-grad must not be negative"):
        TrainOptions(data=".", out="x", coupled_feature_grad=-0.5).validate()


def test_coupled_feature_brake_divides_the_feature_share_by_the_map_scale_to_the_power_above_one():
    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2, k=1)).train()
    n = model.num_features
    model.training_coupled_feature_grad = 4.0

    def share_and_gradient(power: float, peak: float) -> tuple[float, float]:
        """F = 1 everywhere, M = ``peak`` at one of 2×2 places: GAP(F) = 1, GAP(M∘F) = peak / 4, so s = peak / 4."""
        model.training_coupled_feature_brake = power
        features = torch.ones(1, n, 2, 2, requires_grad=True)
        sentiment_map = torch.tensor([[[peak, 0.0], [0.0, 0.0]]])
        model.coupled_descriptor(features, sentiment_map)[:, n:].sum().backward()
        return model.last_coupled_feature_share, features.grad[0, 0, 0, 0].item()

    # s = 12 / 4 = 3: the share 4 / 3² = 4/9; the gradient at M's peak M / 4 · share = 3 · 4/9
    assert share_and_gradient(2.0, 12.0) == pytest.approx((4 / 9, 4 / 3))
    assert share_and_gradient(1.0, 12.0) == pytest.approx((4 / 3, 4.0))
    assert share_and_gradient(2.0, 2.0) == pytest.approx((4.0, 2.0))  # s = 1/2 < 1: the share stands
    assert share_and_gradient(0.0, 12.0) == pytest.approx((4.0, 12.0))  # P = 0: off
    model.training_coupled_feature_floor = 1.0  # the brake takes back the amplification, never more
    assert share_and_gradient(2.0, 12.0) == pytest.approx((1.0, 3.0))  # 4/9 < 1: held at 1
    assert share_and_gradient(2.0, 6.0) == pytest.approx((4 / 2.25, 1.5 * 4 / 2.25))  # s = 1.5: 4/2.25 > 1
    model.training_coupled_feature_floor = 0.0
    assert _recipe_change("scratch-slow-weights-braked", "scratch-slow-weights") == {"coupled_feature_brake": 2.0}
    assert _recipe_change("scratch-slow-weights-floored", "scratch-slow-weights-braked") == {
        "coupled_feature_floor": 1.0
    }
    with pytest.raises(UserError, match="--coupled-feature-floor must not be negative"):
        TrainOptions(data=".", out="x", coupled_feature_floor=-1.0).validate()
    with pytest.raises(UserError, match="--coupled-feature-brake must not be negative"):
        TrainOptions(data=".", out="x", coupled_feature_brake=-1.0).validate()


def test_coupled_slow_epochs_apply_the_coupled_scale_for_the_first_epochs_only():
    from wscnet.training.head_warmup import CamStage

    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=3, k=1))
    n = model.num_features
    stage = CamStage(model, apply_recipe(TrainOptions(), "scratch-slow-start"), steps_per_epoch=10)

    def coupled_gradient(step: int) -> float:
        model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
        stage.apply(step)
        stage.scale_classifier_gradient()
        assert torch.all(model.classifier.weight.grad[:, :n] == 0.5)  # the classifier's 0.5 all run long
        return model.classifier.weight.grad[0, n].item()

    # 6 epochs of 10 steps at 0.5 · 0.25, then the classifier's 0.5 alone
    assert [coupled_gradient(s) for s in (0, 59, 60, 119)] == [0.125, 0.125, 0.5, 0.5]
    # the feature share follows the same window: 4 for steps 0-59, then 1; without a window, all run long
    weights = CamStage(model, apply_recipe(TrainOptions(), "scratch-slow-weights"), steps_per_epoch=10)
    shares = []
    for step in (0, 59, 60, 119):
        weights.apply(step)
        shares.append(model.training_coupled_feature_grad)
    assert shares == [4.0, 4.0, 1.0, 1.0]
    braked = CamStage(model, apply_recipe(TrainOptions(), "scratch-slow-weights-braked"), steps_per_epoch=10)
    brakes = []
    for step in (59, 60):
        braked.apply(step)
        brakes.append(model.training_coupled_feature_brake)
    assert brakes == [2.0, 0.0]
    # delayed by 2 epochs: share 1 and no brake for steps 0-19, then 4 braked until the window ends at 60
    late = CamStage(model, apply_recipe(TrainOptions(), "scratch-slow-weights-late"), steps_per_epoch=10)
    window = []
    for step in (0, 19, 20, 59, 60):
        late.apply(step)
        window.append((model.training_coupled_feature_grad, model.training_coupled_feature_brake))
    assert window == [(1.0, 0.0), (1.0, 0.0), (4.0, 2.0), (4.0, 2.0), (1.0, 0.0)]
    with pytest.raises(UserError, match="--coupled-feature-delay 6.0 must end before --coupled-slow-epochs 6.0"):
        TrainOptions(data=".", out="x", coupled_slow_epochs=6.0, coupled_feature_delay=6.0).validate()
    CamStage(model, apply_recipe(TrainOptions(), "scratch-slow-weights-floored"), steps_per_epoch=10)
    assert model.training_coupled_feature_floor == 1.0
    CamStage(model, apply_recipe(TrainOptions(), "scratch-quiet"), steps_per_epoch=10).apply(119)
    assert model.training_coupled_feature_grad == 0.25
    # a window longer than the run covers it: a 5-epoch run stays slow to its last step
    TrainOptions(data=".", out="x", epochs=5, coupled_slow_epochs=6.0).validate()
    stage.apply(49)
    assert stage.slow
    with pytest.raises(UserError, match="--coupled-slow-epochs must not be negative"):
        TrainOptions(data=".", out="x", coupled_slow_epochs=-1.0).validate()


def test_brake_and_cap_share_the_batch_norms_across_processes(tmp_path):
    """Under DDP every process must scale alike: the norms are averaged over the group (gloo, one process)."""
    import torch.distributed as dist

    from wscnet.training.head_warmup import CamStage

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model, descriptor = _two_half_classifier()
        n = model.num_features
        stage = CamStage(model, TrainOptions(head="wscnet", coupled_weight_cap=2.0), steps_per_epoch=10)
        model.classifier(descriptor)
        assert stage._batch_logit_norms() == pytest.approx((5.0, 20.0))
        stage.cap_coupled_weights()
        assert model.classifier.weight[:, n].tolist() == pytest.approx([6.0, 8.0])
    finally:
        dist.destroy_process_group()
