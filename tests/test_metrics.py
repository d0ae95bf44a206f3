"""Metrics on hand-made maps whose answers are known."""

import math

import numpy as np
import pytest

from wscnet.metrics import (
    AttentionAccumulator,
    DetectionAccumulator,
    attention_metrics,
    binarise,
    classification_metrics,
    detection_metrics,
    otsu_threshold,
)
from wscnet.metrics.attention import auc_judd, cc, emd, gaussian_blur, kl, sim


def square(size=40, top=10, left=10, side=20):
    m = np.zeros((size, size))
    m[top : top + side, left : left + side] = 1.0
    return m


# --- classification -------------------------------------------------------------------------------


def test_classification_metrics_by_hand():
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 0, 2]
    out = classification_metrics(preds, labels, num_classes=4)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["per_class"] == [pytest.approx(0.5), pytest.approx(2 / 3), 1.0, None]
    assert out["confusion"] == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    scores = np.eye(4)[preds] * 3.0  # N×C scores give the same answer through their arg-max
    assert classification_metrics(scores, labels, 4)["confusion"] == out["confusion"]
    with pytest.raises(ValueError):
        classification_metrics([0, 5], [0, 1], 4)


# --- Otsu and detection -------------------------------------------------------------------------


def test_otsu_splits_a_bimodal_image_between_its_modes():
    rng = np.random.default_rng(0)
    dark = rng.normal(0.2, 0.04, 3000)
    bright = rng.normal(0.75, 0.04, 1000)
    x = np.clip(np.concatenate([dark, bright]), 0, 1)
    t = otsu_threshold(x)
    assert 0.35 < t < 0.6
    b = binarise(x)
    assert b[:3000].sum() == 0 and b[3000:].all()


def test_otsu_of_a_constant_map_follows_the_documented_rule():
    assert not binarise(np.zeros((5, 5))).any()
    assert binarise(np.ones((5, 5))).all()


def test_perfect_map_scores_f1_and_zero_mae():
    gt = square()
    out = detection_metrics([gt, gt * 0.9 + 0.05], [gt, gt])
    assert out["f"] == pytest.approx(1.0) and out["precision"] == 1.0 and out["recall"] == 1.0
    assert detection_metrics([gt], [gt])["mae"] == 0.0
    assert out["error_modes"]["counts"]["correct"] == 2


def test_disjoint_map_scores_f0_and_no_overlap():
    out = detection_metrics([square(left=0, side=8)], [square(left=20, side=15)])
    assert out["f"] == 0.0 and out["precision"] == 0.0 and out["recall"] == 0.0
    assert out["error_modes"]["counts"]["no_overlap"] == 1
    assert out["error_modes"]["fractions"]["no_overlap"] == 1.0


def test_empty_prediction_is_no_overlap_and_empty_gt_is_skipped():
    acc = DetectionAccumulator()
    acc.add(np.zeros((40, 40)), square())
    acc.add(square(), np.zeros((40, 40)))
    out = acc.result()
    assert out["count"] == 2 and out["skipped_empty_gt"] == 1
    assert out["error_modes"]["counts"]["no_overlap"] == 1 and out["f"] == 0.0
    assert out["mae"] == pytest.approx(400 / 1600)


def test_nested_maps_fall_in_the_inclusion_modes():
    big, small = square(top=5, left=5, side=30), square(top=15, left=15, side=10)
    acc = DetectionAccumulator()
    row = acc.add(small, big)  # detection inside the ground truth, recall 100/900
    assert row["mode"] == "inside_gt" and row["precision"] == 1.0 and row["recall"] == pytest.approx(1 / 9)
    # ground truth inside the detection: recall 1, so "correct" by the paper's recall criterion,
    # "contains_gt" by the overlap (IoU) criterion
    assert acc.add(big, small)["mode"] == "correct"
    assert DetectionAccumulator(correct_by="iou").add(big, small)["mode"] == "contains_gt"
    partial = square(top=5, left=20, side=20)  # overlaps, neither inside the other, recall 0.25
    assert DetectionAccumulator().add(partial, square(top=15, left=10, side=20))["mode"] == "other_overlap"
    out = acc.result()
    assert out["precision"] == pytest.approx((1.0 + 100 / 900) / 2)
    assert out["recall"] == pytest.approx((1 / 9 + 1.0) / 2)
    p, r = out["precision"], out["recall"]
    assert out["f"] == pytest.approx(2 * p * r / (p + r))
    assert sum(out["error_modes"]["fractions"].values()) == pytest.approx(1.0)


def test_detection_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        DetectionAccumulator().add(np.zeros((4, 4)), np.zeros((5, 5)))


# --- attention ------------------------------------------------------------------------------------


def fixations(shape=(60, 80), n=12, seed=0):
    rng = np.random.default_rng(seed)
    points = np.zeros(shape)
    points[rng.integers(5, shape[0] - 5, n), rng.integers(5, shape[1] - 5, n)] = 1
    return points


def test_cc_sim_kl_of_a_map_with_itself():
    density = gaussian_blur(fixations(), 3.0)
    assert cc(density, density) == pytest.approx(1.0)
    assert sim(density, density) == pytest.approx(1.0)
    assert kl(density, density) == pytest.approx(0.0, abs=1e-9)
    assert cc(density, -density) == pytest.approx(-1.0)


def test_perfect_map_has_auc_judd_near_one_and_random_near_half():
    points = fixations()
    density = gaussian_blur(points, 2.4)
    out = attention_metrics(density, points)
    assert out["auc_judd"] > 0.99 and out["auc_borji"] > 0.95
    assert out["cc"] > 0.95 and out["kl"] < 0.2
    noise = np.random.default_rng(1).random(points.shape)
    assert abs(auc_judd(noise, points > 0) - 0.5) < 0.2
    inverted = attention_metrics(1 - density, points)
    assert inverted["auc_judd"] < 0.2 and inverted["cc"] < 0


def test_continuous_fixation_map_is_its_own_density():
    density = gaussian_blur(fixations(), 3.0)
    out = attention_metrics(density, density)
    assert out["cc"] == pytest.approx(1.0) and out["sim"] == pytest.approx(1.0)
    assert out["auc_judd"] > 0.99  # points: the density's top pixels


def test_emd_counts_the_distance_mass_travels():
    a, b = np.zeros((16, 16)), np.zeros((16, 16))
    a[2, 2], b[2, 7] = 1.0, 1.0
    assert emd(a, b) == pytest.approx(5.0)
    assert emd(a, a) == pytest.approx(0.0, abs=1e-9)


def test_attention_accumulator_averages_and_skips_nan():
    points = fixations()
    acc = AttentionAccumulator()
    acc.add(gaussian_blur(points, 2.4), points)
    acc.add(np.ones(points.shape), np.zeros(points.shape))  # no fixations: AUCs undefined
    out = acc.result()
    assert out["count"] == 2 and out["auc_judd"] > 0.99
    assert not math.isnan(out["cc"])
