"""benchmarks.int8_sensitivity: the margin report on hand-made probabilities, block names."""

import numpy as np

from benchmarks.int8_sensitivity import block_of, margin_report


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
