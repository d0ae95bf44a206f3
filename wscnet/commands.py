"""CLI commands of this package (registered by cli.py). Keep imports here light: no torch."""

from pathlib import Path

import typer

from .choices import Arch, Augment, Coupling, Geometry, Head, Layout, LrSchedule, MapWeight, Pool, Split, TrainDevice
from .defaults import field_defaults, field_values
from .log import log
from .training.options import TrainOptions


def synth(
    out: Path = typer.Argument(..., help="Folder to write the EmotionROI-layout set into."),
    n_per_class: int = typer.Option(200, "--n-per-class", help="Images per class (6 classes)."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same set."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of each class in testing.txt."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a synthetic set with other settings, or write into a non-empty folder.",
    ),
    distractors: str = typer.Option(
        "plain",
        "--distractors",
        help="plain (flat shapes) | salient (textured, object-sized).",
    ),
    scene: str = typer.Option(
        "flat",
        "--scene",
        help="flat | natural (harder: photograph-like backgrounds, blobs of 20-45 %, salient distractors, soft maps).",
    ),
) -> None:
    """Write a synthetic EmotionROI-layout set: class shown only by a local region, with GT maps."""
    from wscnet.synth import SynthConfig, needs_writing, write_synth_set

    cfg = SynthConfig(
        n_per_class=n_per_class, size=size, seed=seed, test_fraction=test_fraction, distractors=distractors, scene=scene
    )
    if not needs_writing(out, cfg, overwrite):
        log.info(f"{out} already holds this synthetic set ({6 * n_per_class} images); nothing written")
        return
    write_synth_set(out, cfg, overwrite=overwrite)
    typer.echo(f"wrote {6 * n_per_class} images to {out}")


# --- train / eval / predict / ablation -----------------------------------------------------------

TRAIN = field_defaults(TrainOptions)  # the one place each training default is written

FROM_SCRATCH_HINT = (
    "Without --pretrained the backbone starts from random weights and the paper's --lr 1e-3 "
    "learns very slowly: pass --recipe scratch (lr 0.02, cosine, warm-up, clipping, the WSCNet "
    "head warm-up and a slow start of its coupled half; see wscnet/training/recipes.py)."
)


def train(
    data: Path = typer.Option(..., "--data", help="Data set folder (FI, EmotionROI, Twitter, CSV, synth)."),
    out: Path = typer.Option(..., "--out", help="Run folder: best.pt, last.pt, history.json, train_log.jsonl."),
    arch: Arch = typer.Option(TRAIN.arch, "--arch", help="Torchvision backbone."),
    head: Head = typer.Option(TRAIN.head, "--head", help="wscnet, or cam (GAP + FC baseline)."),
    k: int = typer.Option(TRAIN.k, "--k", help="Detector maps per class, Eq. (1)."),
    pool: Pool = typer.Option(TRAIN.pool, "--pool", help="Eq. (1) pooling: max (paper) or avg (official code)."),
    map_weight: MapWeight = typer.Option(
        TRAIN.map_weight,
        "--map-weight",
        help="Eq. (3) weights: softmax (paper) or raw.",
    ),
    coupling: Coupling = typer.Option(TRAIN.coupling, "--coupling", help="Eq. (4) coupling."),
    pretrained: Path | None = typer.Option(TRAIN.pretrained, "--pretrained", help="Torchvision ImageNet .pth on disk."),
    epochs: int = typer.Option(TRAIN.epochs, "--epochs"),
    batch_size: int = typer.Option(
        TRAIN.batch_size,
        "--batch-size",
        help="Global batch (split over torchrun processes).",
    ),
    img_size: int = typer.Option(TRAIN.img_size, "--img-size", help="Model input side S (multiple of 32)."),
    geometry: Geometry = typer.Option(
        TRAIN.geometry,
        "--geometry",
        help="Input contract, stored with the model: how a frame of any shape becomes the S×S input: squash "
        "(whole frame, default) | crop (centre square) | letterbox.",
    ),
    augment: Augment = typer.Option(
        TRAIN.augment,
        "--augment",
        help="Training window: aspect (9:16–16:9 windows of 60–100 % of the picture, default; makes squash safe on "
        "stretched frames) | camera (the same shapes at 60–200 %: also the picture inside a wider scene, so one view "
        "can be enough) | sides (each side 1/2–2 of the picture's on its own: the windows camera frames make) | "
        "paper (square 7/8 crop).",
    ),
    lr: float = typer.Option(TRAIN.lr, "--lr", help="Backbone learning rate. " + FROM_SCRATCH_HINT),
    head_lr: float = typer.Option(TRAIN.head_lr, "--head-lr", help="Learning rate of the new layers (1×1 conv, FC)."),
    momentum: float = typer.Option(TRAIN.momentum, "--momentum"),
    weight_decay: float = typer.Option(TRAIN.weight_decay, "--weight-decay"),
    lr_schedule: LrSchedule = typer.Option(
        TRAIN.lr_schedule,
        "--lr-schedule",
        help="step (×gamma every --lr-step epochs) or cosine.",
    ),
    lr_step: int = typer.Option(TRAIN.lr_step, "--lr-step"),
    lr_gamma: float = typer.Option(TRAIN.lr_gamma, "--lr-gamma"),
    warmup_epochs: int = typer.Option(
        TRAIN.warmup_epochs,
        "--warmup-epochs",
        help="Linear warm-up (useful from scratch).",
    ),
    det_weight: float = typer.Option(TRAIN.det_weight, "--det-weight", help="Weight of the detection loss, Eq. (7)."),
    grad_clip: float = typer.Option(
        TRAIN.grad_clip,
        "--grad-clip",
        help="Clip the gradient norm (0: off); steadies from-scratch runs.",
    ),
    bn_momentum: float | None = typer.Option(
        TRAIN.bn_momentum,
        "--bn-momentum",
        help="BatchNorm running-average momentum (default: 0.1 from scratch, the backbone's own with --pretrained).",
    ),
    zero_init_residual: bool | None = typer.Option(
        TRAIN.zero_init_residual,
        "--zero-init-residual/--no-zero-init-residual",
        help="ResNets: start every residual block as the identity (its last BatchNorm scale 0); default: on "
        "for resnet50/101/152 from scratch, off otherwise.",
    ),
    precise_bn_images: int | None = typer.Option(
        TRAIN.precise_bn_images,
        "--precise-bn-images",
        help="Training images that re-estimate BatchNorm statistics before each validation and save (0: off; "
        "default: 512 from scratch, 0 with --pretrained).",
    ),
    layout: Layout | None = typer.Option(TRAIN.layout, "--layout", help="Force a data layout instead of detecting it."),
    fold: int = typer.Option(TRAIN.fold, "--fold", help="Twitter I/II split fold."),
    csv_file: Path | None = typer.Option(TRAIN.csv_file, "--csv", help="CSV of path,label (Flickr/Instagram)."),
    split_seed: int = typer.Option(TRAIN.split_seed, "--split-seed", help="Seed of the train/val/test split."),
    seed: int = typer.Option(TRAIN.seed, "--seed", help="Seed of weights, shuffling and augmentation."),
    workers: int = typer.Option(TRAIN.workers, "--workers", help="DataLoader worker processes."),
    device: TrainDevice = typer.Option(TRAIN.device, "--device"),
    amp: bool = typer.Option(TRAIN.amp, "--amp/--no-amp", help="Mixed precision on CUDA."),
    resume: bool = typer.Option(TRAIN.resume, "--resume", help="Continue the run in --out from its last.pt."),
    overwrite: bool = typer.Option(TRAIN.overwrite, "--overwrite", help="Replace the run already in --out."),
    val_every: int = typer.Option(TRAIN.val_every, "--val-every", help="Validate every N epochs (and after the last)."),
    recipe: str = typer.Option(
        TRAIN.recipe,
        "--recipe",
        help="paper | scratch (from scratch: head warm-up, slow coupled start) | scratch-warmup | scratch-flags | "
        "the measured variants of wscnet/training/recipes.py; fills the flags left at their default.",
    ),
    pool_warmup_epochs: float = typer.Option(
        TRAIN.pool_warmup_epochs,
        "--pool-warmup-epochs",
        help="Training only: Eq. (1) pools GAP -> GMP over these epochs.",
    ),
    det_warmup_epochs: float = typer.Option(
        TRAIN.det_warmup_epochs,
        "--det-warmup-epochs",
        help="Training only: detection-loss weight ramps over these epochs.",
    ),
    det_weight_start: float = typer.Option(
        TRAIN.det_weight_start,
        "--det-weight-start",
        help="Detection-loss weight at step 0 of that ramp.",
    ),
    clip_per_loss: bool = typer.Option(
        TRAIN.clip_per_loss,
        "--clip-per-loss",
        help="WSCNet: clip at grad-clip × (1 + detection-loss weight).",
    ),
    zero_init_coupled: bool = typer.Option(
        TRAIN.zero_init_coupled,
        "--zero-init-coupled",
        help="WSCNet: the classifier's weights on GAP(M∘F) start at 0 (it starts as the CAM baseline's).",
    ),
    detach_coupled_map: bool = typer.Option(
        TRAIN.detach_coupled_map,
        "--detach-coupled-map",
        help="WSCNet, training only: the classification loss does not flow back through the map M of M∘F (M "
        "learns from the detection loss alone).",
    ),
    det_label_smoothing: float = typer.Option(
        TRAIN.det_label_smoothing,
        "--det-label-smoothing",
        help="WSCNet, training only: label smoothing of the detection loss (bounds the growth of the map M).",
    ),
    det_backbone_grad: float = typer.Option(
        TRAIN.det_backbone_grad,
        "--det-backbone-grad",
        help="WSCNet, training only: share of the detection loss's gradient that reaches the backbone (0: the "
        "detector learns on fixed features).",
    ),
    hold_coupled_epochs: float = typer.Option(
        TRAIN.hold_coupled_epochs,
        "--hold-coupled-epochs",
        help="WSCNet, training only: the classifier's weights on GAP(M∘F) wait at their start for N epochs.",
    ),
    coupled_grad_scale: float = typer.Option(
        TRAIN.coupled_grad_scale,
        "--coupled-grad-scale",
        help="WSCNet, training only: the gradient of the classifier's weights on GAP(M∘F) is multiplied by this "
        "(in [0, 1]; below 1 the coupled half learns slower than the rest).",
    ),
    classifier_grad_scale: float = typer.Option(
        TRAIN.classifier_grad_scale,
        "--classifier-grad-scale",
        help="WSCNet, training only: the gradient of the whole classifier (Eq. 4) is multiplied by this (in [0, 1]).",
    ),
    coupled_logit_cap: float = typer.Option(
        TRAIN.coupled_logit_cap,
        "--coupled-logit-cap",
        help="WSCNet, training only: while the batch's logits from GAP(M∘F) exceed this many times those from "
        "GAP(F) (mean norms), the coupled-half gradient is also multiplied by (cap / ratio)^2 (0: off).",
    ),
    coupled_slow_epochs: float = typer.Option(
        TRAIN.coupled_slow_epochs,
        "--coupled-slow-epochs",
        help="WSCNet, training only: --coupled-grad-scale applies for the first N epochs only (0: the whole run).",
    ),
    coupled_feature_grad: float = typer.Option(
        TRAIN.coupled_feature_grad,
        "--coupled-feature-grad",
        help="WSCNet, training only: the classification loss's gradient through GAP(M∘F) into the backbone's "
        "features F is multiplied by this (the values are unchanged; 0: the backbone learns from GAP(F) and L_dec; "
        "with --coupled-slow-epochs, for those epochs only).",
    ),
    coupled_weight_cap: float = typer.Option(
        TRAIN.coupled_weight_cap,
        "--coupled-weight-cap",
        help="WSCNet, training only: after each step, where the batch's logits from GAP(M∘F) exceed this many times "
        "those from GAP(F), the coupled-half weights are scaled down to that ratio (0: off).",
    ),
    coupled_feature_brake: float = typer.Option(
        TRAIN.coupled_feature_brake,
        "--coupled-feature-brake",
        help="WSCNet, training only: where the batch's GAP(M∘F) is s > 1 times GAP(F), --coupled-feature-grad is "
        "divided by s^P (with --coupled-slow-epochs, for those epochs only; 0: off).",
    ),
    coupled_feature_floor: float = typer.Option(
        TRAIN.coupled_feature_floor,
        "--coupled-feature-floor",
        help="WSCNet, training only: --coupled-feature-brake does not take --coupled-feature-grad below this "
        "(1: it takes back an amplification, never more).",
    ),
    coupled_feature_delay: float = typer.Option(
        TRAIN.coupled_feature_delay,
        "--coupled-feature-delay",
        help="WSCNet, training only: --coupled-feature-grad and --coupled-feature-brake apply only from this epoch "
        "on (before it the share is 1; inside --coupled-slow-epochs when that is set).",
    ),
    coupled_input_brake: float = typer.Option(
        TRAIN.coupled_input_brake,
        "--coupled-input-brake",
        help="WSCNet, training only: where the batch's GAP(M∘F) is s > 1 times GAP(F) (mean norms), the coupled-half "
        "gradient is also divided by s^P; P = 2 gives both halves' logits the same step (0: off).",
    ),
    cam_stage_epochs: float = typer.Option(
        TRAIN.cam_stage_epochs,
        "--cam-stage-epochs",
        help="WSCNet, training only: for the first N epochs the backbone learns as CAM's (detector on detached "
        "features, coupled-half weights held, CAM's clip).",
    ),
    diagnostics_every: int = typer.Option(
        TRAIN.diagnostics_every,
        "--diagnostics-every",
        help="Log gradient norms, softmax(v) entropy, map contrast every N steps (diagnostics.jsonl).",
    ),
) -> None:
    """Train WSCNet (or an ablation / the CAM baseline); torchrun for several GPUs or nodes."""
    given = {name: str(value) if isinstance(value, Path) else value for name, value in locals().items()}
    from wscnet.training import train as run_training
    from wscnet.training.recipes import apply_recipe

    options = TrainOptions(**field_values(TrainOptions, given))
    apply_recipe(options, recipe)
    options.validate()
    if pretrained is None and options.lr <= 1e-3:
        log.info(f"note: {FROM_SCRATCH_HINT}")  # advice, not a problem with the input
    summary = run_training(options)
    if summary.get("is_main", True):
        typer.echo(
            f"best epoch {summary['best']['epoch']} (score {summary['best']['score']:.4f}); checkpoints in {out}"
        )


def evaluate(
    checkpoint: Path = typer.Argument(..., help="best.pt / last.pt of a training run."),
    data: Path = typer.Option(..., "--data", help="Data set folder."),
    split: Split = typer.Option("test", "--split"),
    ten_crop: bool = typer.Option(False, "--ten-crop", help="Average softmax over ten crops (paper)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the metrics here."),
    layout: Layout | None = typer.Option(None, "--layout"),
    fold: int = typer.Option(1, "--fold"),
    csv_file: Path | None = typer.Option(None, "--csv"),
    split_seed: int = typer.Option(0, "--split-seed"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers"),
    device: TrainDevice = typer.Option("auto", "--device"),
) -> None:
    """Accuracy of both branches, per class, confusion; detection and attention metrics where the set has maps."""
    from runtime.validate import check_output_file
    from wscnet.evaluate import evaluate_checkpoint, format_table, write_json

    check_output_file(json_out, "--json")
    result = evaluate_checkpoint(
        checkpoint,
        data,
        split=split,
        layout=layout,
        fold=fold,
        csv_file=str(csv_file) if csv_file else None,
        split_seed=split_seed,
        ten_crop=ten_crop,
        batch_size=batch_size,
        workers=workers,
        device=device,
    )
    typer.echo(format_table(result))
    if json_out is not None:
        write_json(json_out, result)
        typer.echo(f"wrote {json_out}")


def predict(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint."),
    images: list[Path] = typer.Argument(..., help="Image files, or folders of images."),
    out: Path | None = typer.Option(None, "--out", help="Write <name>_map.png (map blended over the image) here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of lines."),
    device: TrainDevice = typer.Option("auto", "--device"),
) -> None:
    """Label, class probabilities and a sentiment-map overlay per image; unreadable ones are reported once
    and skipped."""
    from wscnet.errors import UserError
    from wscnet.predict import format_predictions, predict_images

    results = predict_images(checkpoint, images, out_dir=out, device=device)
    if not any(r.get("label") is not None for r in results):
        raise UserError(f"no readable image among the {len(results)} input(s)")
    typer.echo(format_predictions(results, as_json))


def ablation(
    data: list[Path] = typer.Option(
        ...,
        "--data",
        help="Data set folder(s) with GT maps (repeatable: one table row group each).",
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the runs, ablation.md, ablation.json and ablation.png."),
    arch: Arch = typer.Option("resnet18", "--arch"),
    pretrained: Path | None = typer.Option(TRAIN.pretrained, "--pretrained"),
    epochs: int = typer.Option(8, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size"),
    img_size: int = typer.Option(160, "--img-size"),
    lr: float = typer.Option(0.02, "--lr", help="Backbone rate (0.02 suits from scratch; 1e-3 with --pretrained)."),
    head_lr: float = typer.Option(0.02, "--head-lr"),
    lr_schedule: LrSchedule = typer.Option("cosine", "--lr-schedule"),
    warmup_epochs: int = typer.Option(1, "--warmup-epochs"),
    grad_clip: float = typer.Option(2.0, "--grad-clip"),
    split: Split = typer.Option("test", "--split", help="Split the table is measured on."),
    seeds: list[int] | None = typer.Option(None, "--seed", help="Training seed(s), repeatable (default: 0)."),
    recipes: list[str] | None = typer.Option(
        None,
        "--recipe",
        help="Recipe(s), repeatable: scratch-flags (default) | scratch | paper.",
    ),
    val_every: int = typer.Option(TRAIN.val_every, "--val-every", help="Validate every N epochs (and after the last)."),
    workers: int = typer.Option(TRAIN.workers, "--workers"),
    device: TrainDevice = typer.Option(TRAIN.device, "--device"),
    amp: bool = typer.Option(TRAIN.amp, "--amp/--no-amp", help="Mixed precision on CUDA."),
    only: list[str] | None = typer.Option(None, "--only", help="Run only these variants (repeatable)."),
    train_missing: bool = typer.Option(
        True,
        "--train/--no-train",
        help="--no-train: tabulate finished runs only, list the rest.",
    ),
    resume: bool = typer.Option(False, "--resume", help="Reuse the finished runs in --out and continue the others."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Train every run again, replacing what --out holds."),
    diagnostics_every: int = typer.Option(
        TRAIN.diagnostics_every,
        "--diagnostics-every",
        help="Each run logs diagnostics.jsonl every N steps (see train).",
    ),
) -> None:
    """Train and evaluate WSCNet variants and the CAM baseline per set, recipe and seed; write the table and chart."""
    from wscnet.ablation import run_ablation

    table = run_ablation(
        data=data,
        out=out,
        only=only,
        seeds=seeds or [0],
        recipes=recipes or ["scratch-flags"],
        split=split,
        train_missing=train_missing,
        resume=resume,
        overwrite=overwrite,
        arch=arch,
        pretrained=str(pretrained) if pretrained else None,
        epochs=epochs,
        batch_size=batch_size,
        img_size=img_size,
        lr=lr,
        head_lr=head_lr,
        lr_schedule=lr_schedule,
        val_every=val_every,
        warmup_epochs=warmup_epochs,
        grad_clip=grad_clip,
        workers=workers,
        device=device,
        amp=amp,
        diagnostics_every=diagnostics_every,
    )
    typer.echo(table)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("predict")(predict)
    app.command("ablation")(ablation)
