"""studies.int8_sensitivity: the margin report on hand-made probabilities, block names."""

import numpy as np

from export.int8 import block_of
from studies.int8_sensitivity import greedy_float_blocks, margin_report


def test_margin_report_finds_the_near_tie_flip():
    reference = np.array([[0.55, 0.30, 0.15], [0.34, 0.33, 0.33], [0.10, 0.80, 0.10], [0.2, 0.2, 0.6]])
    quantized = np.array([[0.54, 0.31, 0.15], [0.33, 0.34, 0.33], [0.10, 0.80, 0.10], [0.2, 0.2, 0.6]])
    report = margin_report(reference, quantized)
    assert report["agreement"] == 0.75
    assert report["margins_of_flips"] == [0.01]  # 0.34 - 0.33: the only flip is the near tie
    assert report["agreement_above_margin"]["0.02"] == {"images": 3, "agreement": 1.0}
    assert report["agreement_above_margin"]["0.00"] == {"images": 4, "agreement": 0.75}
    assert "0.20" in report["agreement_above_margin"] and report["agreement_above_margin"]["0.20"]["images"] == 3
    assert abs(report["mean_abs_dprobs"] - 0.04 / 12) < 1e-9


def test_block_of_groups_nodes_by_backbone_block():
    assert block_of("/model/backbone/backbone.3/block/block.1/fc1/Conv") == "backbone.3"
    assert block_of("/model/backbone/backbone.12/backbone.12.0/Conv") == "backbone.12"
    assert block_of("/model/detector/Conv") == "detector"


def test_greedy_search_floats_the_most_helpful_blocks_until_the_target():
    # hand-made: blocks a and c each fix 3 points when float, b fixes 1; INT8 alone is at 90 %
    gain = {"a": 0.03, "b": 0.01, "c": 0.03}
    singles = [
        {"block": "a", "agreement": 0.93, "mean_abs_dprobs": 0.02},
        {"block": "b", "agreement": 0.91, "mean_abs_dprobs": 0.01},
        {"block": "c", "agreement": 0.93, "mean_abs_dprobs": 0.01},
    ]
    measured = []

    def measure(blocks):
        measured.append(list(blocks))
        return {"agreement": 0.90 + sum(gain[b] for b in blocks), "mean_abs_dprobs": 0.0}

    steps = greedy_float_blocks(singles, measure, target=0.955)
    assert measured == [["c"], ["c", "a"]]  # c before a: same agreement, smaller error
    assert steps[-1]["float_blocks"] == ["c", "a"] and steps[-1]["agreement"] >= 0.955
    unreachable = greedy_float_blocks(singles, measure, target=0.99)
    assert unreachable[-1]["float_blocks"] == ["c", "a", "b"] and unreachable[-1]["agreement"] < 0.99
