"""Every training setting in one dataclass; the defaults are the paper's (docs/method.md, Training)."""

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from runtime.contract import GEOMETRIES

from ..choices import AUGMENTS, BOTTLENECK_RESNETS, LR_SCHEDULES, input_side_problem
from ..choices import TRAIN_DEVICES as DEVICES
from ..errors import UserError

# What a run recorded before an option existed was trained with (otherwise the option's default).
BEFORE_OPTION_EXISTED = {"zero_init_residual": False}
# Options that only act on the weights at step 0: a resumed run keeps the ones it started with.
INITIALISATION = ("zero_init_residual", "zero_init_coupled")

# What a run folder holds; finding any of them means --out is a run already.
RUN_FILES = ("last.pt", "best.pt", "history.json", "train_log.jsonl")


@dataclass
class TrainOptions:
    data: str = ""
    out: str = ""
    arch: str = "resnet101"
    head: str = "wscnet"
    k: int = 4
    pool: str = "max"
    map_weight: str = "softmax"
    coupling: str = "both"
    pretrained: str | None = None  # torchvision ImageNet .pth on disk; None trains from scratch
    epochs: int = 25
    batch_size: int = 32  # global: split over the torchrun processes
    img_size: int = 448
    geometry: str = "squash"  # the input contract: how any frame becomes the S×S input
    augment: str = "aspect"  # random window: "aspect" (9:16–16:9), "camera" (also zoomed out) or "paper" (7/8 crop)
    lr: float = 1e-3  # backbone
    head_lr: float = 1e-2  # new layers: 1×1 detector conv and the FC
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "step"  # official code: ×0.1 every 7 epochs
    lr_step: int = 7
    lr_gamma: float = 0.1
    warmup_epochs: int = 0  # linear warm-up; helps from-scratch runs at a high rate
    det_weight: float = 1.0  # Eq. (7): L = L_cls + det_weight · L_dec
    pool_warmup_epochs: float = 0.0  # training only: Eq. (1) blends GAP -> GMP over these epochs
    det_warmup_epochs: float = 0.0  # training only: detection-loss weight det_weight_start -> det_weight
    det_weight_start: float = 1.0
    clip_per_loss: bool = False  # WSCNet: the clip budget is grad_clip per loss term (1 + det weight)
    zero_init_coupled: bool = False  # WSCNet: the FC weights on GAP(M∘F) start at 0 (see head_warmup.py)
    detach_coupled_map: bool = False  # WSCNet, training only: L_cls does not flow back through M in M∘F
    det_label_smoothing: float = 0.0  # WSCNet, training only: label smoothing of L_dec (bounds M's growth)
    cam_stage_epochs: float = 0.0  # WSCNet, training only: the backbone first learns as CAM's (head_warmup.CamStage)
    det_backbone_grad: float = 1.0  # WSCNet, training only: share of dL_dec/dF that reaches the backbone
    hold_coupled_epochs: float = 0.0  # WSCNet, training only: the coupled-half weights wait this long
    coupled_grad_scale: float = 1.0  # WSCNet, training only: the coupled-half weights' gradient × this
    classifier_grad_scale: float = 1.0  # WSCNet, training only: the whole classifier's gradient × this
    coupled_logit_cap: float = 0.0  # WSCNet, training only: brake the coupled half above this logit ratio (0 = off)
    coupled_slow_epochs: float = 0.0  # WSCNet, training only: coupled_grad_scale for these first epochs (0 = all)
    coupled_feature_grad: float = 1.0  # WSCNet, training only: L_cls's gradient via M∘F into F × this
    coupled_weight_cap: float = 0.0  # WSCNet, training only: scale its weights down above this logit ratio (0 = off)
    coupled_feature_brake: float = 0.0  # WSCNet, training only: coupled_feature_grad / s^P, s = M∘F's size
    coupled_feature_floor: float = 0.0  # WSCNet, training only: the braked feature share stays at least this
    coupled_feature_delay: float = 0.0  # WSCNet, training only: coupled_feature_grad/brake from this epoch on
    coupled_input_brake: float = 0.0  # WSCNet, training only: coupled-half gradient / s^P, s = its input / GAP(F)
    grad_clip: float = 0.0  # max global gradient norm, 0 = off; M∘F is quadratic in the
    # features, so from scratch at high rates the classification loss can blow up without it
    bn_momentum: float | None = None  # BatchNorm running-average momentum; None: see batchnorm_plan
    precise_bn_images: int | None = None  # training images that re-estimate BatchNorm statistics
    # before each validation and save (0: off); None: see batchnorm_plan
    zero_init_residual: bool | None = None  # ResNets: each residual block's last BatchNorm scale
    # starts at 0 (every block starts as identity); None: on for resnet50/101/152 from scratch
    layout: str | None = None
    fold: int = 1
    csv_file: str | None = None
    split_seed: int = 0
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    resume: bool = False
    overwrite: bool = False  # replace a run already in ``out``
    val_every: int = 1
    recipe: str = "paper"  # the preset these options started from (recipes.py); informational
    diagnostics_every: int = 0  # every N steps a line of diagnostics.jsonl (0 = off); see diagnostics.py
    max_train_batches: int | None = None  # smoke tests: stop each epoch early

    def __post_init__(self) -> None:
        if self.zero_init_residual is None:
            self.zero_init_residual = self.pretrained is None and self.arch in BOTTLENECK_RESNETS

    def validate(self) -> None:
        if not self.data:
            raise UserError("--data is required")
        if not Path(self.data).is_dir():
            raise UserError(f"{self.data}: data directory not found")
        if not self.out:
            raise UserError("--out is required")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}")
        if self.geometry not in GEOMETRIES:
            raise UserError(f"--geometry must be one of {', '.join(GEOMETRIES)}; got {self.geometry!r}")
        if self.augment not in AUGMENTS:
            raise UserError(f"--augment must be one of {', '.join(AUGMENTS)}; got {self.augment!r}")
        if self.device not in DEVICES:
            raise UserError(f"--device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        positive = {"epochs": self.epochs, "batch-size": self.batch_size, "k": self.k, "lr-step": self.lr_step}
        for name, value in positive.items():
            if value < 1:
                raise UserError(f"--{name} must be at least 1; got {value}")
        if problem := input_side_problem(self.img_size):
            raise UserError(f"--img-size {problem}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise UserError("--lr and --head-lr must be positive")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise UserError(f"--bn-momentum must be in (0, 1]; got {self.bn_momentum}")
        if self.precise_bn_images is not None and self.precise_bn_images < 0:
            raise UserError(f"--precise-bn-images must be >= 0; got {self.precise_bn_images}")
        if min(self.pool_warmup_epochs, self.det_warmup_epochs, self.det_weight_start, self.diagnostics_every) < 0:
            raise UserError(
                "--pool-warmup-epochs, --det-warmup-epochs, --det-weight-start and "
                "--diagnostics-every must not be negative"
            )
        for name, value in {
            "det-backbone-grad": self.det_backbone_grad,
            "coupled-grad-scale": self.coupled_grad_scale,
            "classifier-grad-scale": self.classifier_grad_scale,
        }.items():
            if not 0 <= value <= 1:
                raise UserError(f"--{name} must be in [0, 1]; got {value}")
        # a stage as long as the run would leave the coupled half untrained
        for name, value in {
            "cam-stage-epochs": self.cam_stage_epochs,
            "hold-coupled-epochs": self.hold_coupled_epochs,
        }.items():
            if not 0 <= value < self.epochs:
                raise UserError(f"--{name} must be in [0, --epochs); got {value}")
        if 0 < self.coupled_slow_epochs <= self.coupled_feature_delay:
            raise UserError(
                f"--coupled-feature-delay {self.coupled_feature_delay} must end before --coupled-slow-epochs "
                f"{self.coupled_slow_epochs}: the feature share applies inside that window"
            )
        # a slow window or a delay longer than the run covers it (recipes give windows in epochs): only < 0 is wrong
        for name, value in {
            "coupled-slow-epochs": self.coupled_slow_epochs,
            "coupled-feature-delay": self.coupled_feature_delay,
            "coupled-logit-cap": self.coupled_logit_cap,
            "coupled-weight-cap": self.coupled_weight_cap,
            "coupled-input-brake": self.coupled_input_brake,
            "coupled-feature-grad": self.coupled_feature_grad,
            "coupled-feature-brake": self.coupled_feature_brake,
            "coupled-feature-floor": self.coupled_feature_floor,
        }.items():
            if value < 0:
                raise UserError(f"--{name} must not be negative; got {value}")
        if not 0 <= self.det_label_smoothing < 1:
            raise UserError(f"--det-label-smoothing must be in [0, 1); got {self.det_label_smoothing}")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise UserError(f"{self.pretrained}: pretrained weights file not found")
        self.check_out()

    def check_out(self) -> None:
        """``out`` is a folder that holds no run, or the run to continue (--resume), or the run
        the user asked to replace (--overwrite): a finished run is never lost by accident."""
        from runtime.validate import check_output_folder

        out = Path(self.out)
        check_output_folder(out, "--out")
        if self.resume and self.overwrite:
            raise UserError("--resume continues the run in --out and --overwrite replaces it: pass one")
        if self.resume:
            if not (out / "last.pt").is_file():
                raise UserError(f"{out / 'last.pt'}: nothing to resume (no last.pt in {out})")
            return
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found and not self.overwrite:
            raise UserError(
                f"{out}: already holds a training run ({', '.join(found)}); pass --resume "
                "to continue it or --overwrite to replace it"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainOptions":
        """The options a run recorded, including runs from before an option existed."""
        known = {f.name for f in fields(cls)}
        return cls(**{**BEFORE_OPTION_EXISTED, **{k: v for k, v in data.items() if k in known}})

    # Changing any of these under --resume would silently train a different model.
    FIXED_ON_RESUME = (
        "data",
        "arch",
        "head",
        "k",
        "pool",
        "map_weight",
        "coupling",
        "img_size",
        "geometry",
        "layout",
        "fold",
        "csv_file",
        "split_seed",
        "seed",
    )
