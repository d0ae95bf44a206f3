"""Which BatchNorm statistics to validate and save with: the measurement behind ``batchnorm_plan``.

One from-scratch run per (backbone, momentum); after every epoch the validation split is scored
in eval mode three ways on the same weights: with the running averages training left
(momentum as given), after a precise-BN pass over training images through the training transform (random crops,
flips), and after one through the evaluation transform (whole image resized; what training does). BatchNorm buffers do not
change what the weights learn, so the runs differ only in these scores.

    python cli.py study batchnorm-choice DATA --out runs/bn-choice --arch mobilenet_v3_small \\
        --momentum 0.01 --momentum 0.1 --img-size 96 --epochs 4
"""

import copy
import json
from pathlib import Path

from wscnet.atomic import atomic_write_text


def probe_run(
    data: Path, out: Path, arch: str, momentum: float, img_size: int, epochs: int, precise_images: int
) -> list[dict]:
    """Train once; per epoch the val accuracy with EMA statistics and with two precise-BN passes."""
    from wscnet.data import train_transform
    from wscnet.training import TrainOptions
    from wscnet.training.distributed import setup
    from wscnet.training.loop import Trainer, input_contract

    options = TrainOptions(
        data=str(data),
        out=str(out / f"{arch}-m{momentum}"),
        arch=arch,
        img_size=img_size,
        epochs=epochs,
        batch_size=16,
        lr=0.02,
        head_lr=0.02,
        lr_schedule="cosine",
        warmup_epochs=1,
        grad_clip=2.0,
        workers=0,
        device="cpu",
        bn_momentum=momentum,
        precise_bn_images=0,
    )

    class Probe(Trainer):
        def _validate(self) -> dict:
            scores = {f"ema_{k}": v for k, v in super()._validate().items()}
            saved = copy.deepcopy(self.model.state_dict())
            self.batchnorm["precise_bn_images"] = precise_images
            for name, transform in (
                ("train", train_transform(input_contract(options), options.augment)),
                ("eval", None),
            ):
                kept = self.batchnorm_set.transform
                self.batchnorm_set.transform = transform or kept
                self._recalibrate_batchnorm(len(self.history))
                self.batchnorm_set.transform = kept
                scores.update({f"precise_{name}_{k}": v for k, v in super()._validate().items()})
                self.model.load_state_dict(saved)
            self.batchnorm["precise_bn_images"] = 0
            return scores

    options.validate()
    ctx = setup(options.device)
    try:
        summary = Probe(options, ctx).run()
    finally:
        ctx.close()
    return [{"arch": arch, "momentum": momentum, **record} for record in summary["history"]]


def run_batchnorm_choice(
    data: Path, *, out: Path, arch: list[str], momentum: list[float], img_size: int, epochs: int, precise_images: int
) -> None:
    import torch

    torch.set_num_threads(1)
    rows = []
    for name in arch:
        for value in momentum:
            rows += probe_run(data, out, name, value, img_size, epochs, precise_images)
            atomic_write_text(out / "bn-choice.json", json.dumps(rows, indent=2) + "\n")
    keys = ("train_accuracy", "ema_val_accuracy", "precise_train_val_accuracy", "precise_eval_val_accuracy")
    print("| arch | momentum | epoch | " + " | ".join(keys) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for row in rows:
        print(
            f"| {row['arch']} | {row['momentum']} | {row['epoch']} | "
            + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys)
            + " |"
        )
