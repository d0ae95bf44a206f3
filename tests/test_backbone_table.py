"""The backbone table end to end on a real (tiny) MobileNetV3 run: export of three precisions with
parity, test-split accuracy through the runtime back-ends, worker latency, video fps."""

import json

import torch

from studies.backbone_table import run_backbone_table as backbone_table
from wscnet.synth import SynthConfig, write_synth_set
from wscnet.training import TrainOptions, train


def test_table_over_a_trained_mobilenet(tmp_path):
    torch.set_num_threads(1)
    data = write_synth_set(tmp_path / "data", SynthConfig(n_per_class=6, size=64, seed=1), progress=False)
    heldout = write_synth_set(tmp_path / "heldout", SynthConfig(n_per_class=2, size=64, seed=9), progress=False)
    run = tmp_path / "run"
    train(
        TrainOptions(
            data=str(data),
            out=str(run),
            arch="mobilenet_v3_small",
            img_size=64,
            batch_size=8,
            epochs=1,
            lr=0.02,
            head_lr=0.02,
            workers=0,
            device="cpu",
        )
    )
    out = tmp_path / "table"
    backbone_table(
        [run / "best.pt"],
        data=data,
        heldout=heldout,
        out=out,
        threads=1,
        duration=0.2,
        video_frames=4,
        calib_n=8,
        parity_n=8,
    )
    rows = json.loads((out / "backbones.json").read_text())
    assert [r["backend"] for r in rows] == ["torch", "ort", "ort-fp16", "ort-int8"]
    torch_row, fp32, fp16, int8 = rows
    assert all(r["backbone"] == "mobilenet_v3_small" and r["from_scratch"] is True for r in rows)
    # the FP32 file computes what PyTorch computes: same decisions on the same test images
    assert fp32["parity_passed"] and fp32["accuracy"] == torch_row["accuracy"]
    assert abs(fp32["detection_f"] - torch_row["detection_f"]) < 0.02
    # fp16 halves the weights; int8 quantizes all but MobileNetV3's hard-swish neighbour convs
    assert fp16["size_mb"] < 0.6 * fp32["size_mb"] and int8["size_mb"] < 0.7 * fp32["size_mb"]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["median_ms"] > 0 and row["peak_mem_mb"] > 0
    assert all(r["video_fps"] > 0 for r in (fp32, fp16, int8))
    table = (out / "backbones.md").read_text()
    assert table.count("| mobilenet_v3_small | from scratch, epoch 1 |") == 4
