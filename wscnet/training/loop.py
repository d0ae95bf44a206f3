"""The training loop: SGD with two learning rates, joint loss, per-epoch validation and
atomic best/last checkpoints, resumable, single process or under torchrun."""

import json
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from runtime.contract import InputContract

from ..atomic import atomic_write_text
from ..backbones import zero_init_residual
from ..checkpoint import make_checkpoint, save_checkpoint
from ..errors import UserError
from ..log import log
from ..losses import wscnet_loss
from ..model import WSCNet, WSCNetConfig
from .batchnorm import batchnorm_plan, recalibrate_batchnorm
from .diagnostics import Diagnostics
from .distributed import DistContext, setup
from .head_warmup import CamStage, HeadWarmup, zero_init_coupled_weights
from .options import INITIALISATION, TrainOptions
from .resume import load_resume_state, seed_epoch, train_state


def train(options: TrainOptions) -> dict:
    """Train as ``options`` say; returns the summary rank 0 also writes to ``history.json``."""
    options.validate()
    options.data = str(Path(options.data).resolve())
    ctx = setup(options.device)
    try:
        return Trainer(options, ctx).run()
    finally:
        ctx.close()


class Trainer:
    def __init__(self, options: TrainOptions, ctx: DistContext) -> None:
        self.options = options
        self.ctx = ctx
        self.out = Path(options.out)
        self.train_set, self.val_set, self.class_names = build_datasets(options)
        self.batchnorm_set = batchnorm_dataset(self.train_set, input_contract(options))
        config = WSCNetConfig(
            arch=options.arch,
            num_classes=len(self.class_names),
            k=options.k,
            pool=options.pool,
            map_weight=options.map_weight,
            coupling=options.coupling,
            head=options.head,
        )
        torch.manual_seed(options.seed)  # same initial weights on every rank and every rerun
        self.model = WSCNet(config, pretrained=options.pretrained).to(ctx.device)
        if options.zero_init_residual:  # resuming overwrites these weights anyway
            zero_init_residual(self.model.backbone)
        if options.zero_init_coupled:
            zero_init_coupled_weights(self.model)
        self.model.training_detach_map = options.detach_coupled_map
        self.batchnorm = batchnorm_plan(options, self.model)
        self.train_loader, self.sampler = self._train_loader()
        self.steps_per_epoch = len(self.train_loader)
        if options.max_train_batches:
            self.steps_per_epoch = min(self.steps_per_epoch, options.max_train_batches)
        self.diagnostics = None
        if options.diagnostics_every and ctx.is_main:
            self.diagnostics = Diagnostics(self.model, self.out, options.diagnostics_every)
        self.optimizer = build_optimizer(self.model, options)
        self.scheduler = build_scheduler(self.optimizer, options, self.steps_per_epoch)
        self.warmup = HeadWarmup(options, self.steps_per_epoch)
        self.cam_stage = CamStage(self.model, options, self.steps_per_epoch)
        use_amp = options.amp and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.start_epoch = 0
        self.best = {"epoch": 0, "score": -math.inf}
        self.history: list[dict] = []
        if options.resume:
            self._restore()
        self.net = self.model
        if ctx.enabled:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def _train_loader(self) -> tuple[DataLoader, DistributedSampler | None]:
        from ..data import collate_skip_bad

        per_rank = max(1, self.options.batch_size // self.ctx.world_size)
        sampler = None
        if self.ctx.enabled:
            sampler = DistributedSampler(
                self.train_set,
                num_replicas=self.ctx.world_size,
                rank=self.ctx.rank,
                shuffle=True,
                seed=self.options.seed,
                drop_last=True,
            )
        loader = DataLoader(
            self.train_set,
            batch_size=per_rank,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=self.options.workers,
            collate_fn=collate_skip_bad,
            drop_last=len(self.train_set) > per_rank * self.ctx.world_size,
            pin_memory=self.ctx.device.type == "cuda",
            persistent_workers=False,
        )
        return loader, sampler

    def _restore(self) -> None:
        ckpt = load_resume_state(self.out, self.options)
        state = ckpt["train_state"]
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.best = dict(state.get("best", self.best))
        self.history = list(state.get("history", []))
        started = TrainOptions.from_dict(state.get("args", {}))
        for key in INITIALISATION:  # the run keeps the initialisation it started with
            setattr(self.options, key, getattr(started, key))
        if self.ctx.is_main:
            log.info(f"resuming {self.out / 'last.pt'} after epoch {self.start_epoch}")

    def run(self) -> dict:
        options = self.options
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            log.info(
                f"training {options.arch}/{options.head} on {len(self.train_set)} images "
                f"({len(self.val_set)} val), {len(self.class_names)} classes, device "
                f"{self.ctx.device}, {self.ctx.world_size} process(es)"
            )
        for epoch in range(self.start_epoch, options.epochs):
            record = self._epoch(epoch)
            if self.ctx.is_main:
                self._save(epoch + 1, record)
            self.ctx.barrier()
        summary = {
            "epochs": options.epochs,
            "best": self.best,
            "history": self.history,
            "out": str(self.out),
            "is_main": self.ctx.is_main,
        }
        return summary

    def _epoch(self, epoch: int) -> dict:
        seed_epoch(self.options.seed, epoch, self.ctx.rank)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        start = time.perf_counter()
        rates = {"lr": self.optimizer.param_groups[0]["lr"], "head_lr": self.optimizer.param_groups[-1]["lr"]}
        record = {"epoch": epoch + 1, **self._train_epoch(epoch)}
        record["train_seconds"] = round(time.perf_counter() - start, 2)
        if self.ctx.is_main and self.batchnorm["precise_bn_images"]:
            record["precise_bn_images"] = self._recalibrate_batchnorm(epoch)
        if self.ctx.is_main and self.val_set is not None and len(self.val_set):
            last = epoch + 1 == self.options.epochs
            if last or (epoch + 1) % self.options.val_every == 0:
                record.update(self._validate())
        record.update(rates)  # the rates this epoch began with
        return record

    def _train_epoch(self, epoch: int) -> dict:
        self.net.train()
        device = self.ctx.device
        sums = [0.0, 0.0, 0.0, 0.0]  # loss·n, cls loss·n, correct, n
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.options.epochs}",
            file=sys.stderr,
            disable=not self.ctx.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(self.train_loader):
            if step >= self.steps_per_epoch:
                break
            if batch is None:  # every image of the batch was unreadable
                bar.update(1)
                self.scheduler.step()
                continue
            global_step = epoch * self.steps_per_epoch + step
            self.warmup.apply(self.model, global_step)
            self.cam_stage.apply(global_step)
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=self.scaler.is_enabled()):
                out = self.net(images)
                loss, parts = wscnet_loss(
                    out,
                    labels,
                    self.options.head,
                    self.warmup.det_weight(global_step),
                    self.options.det_label_smoothing,
                )
            if not torch.isfinite(loss):
                raise UserError(
                    f"training diverged at epoch {epoch + 1} step {step + 1} (loss {loss.item()}); "
                    f"lower --lr / --head-lr"
                )
            probe = self.diagnostics is not None and self.diagnostics.wanted(step)
            row = self.diagnostics.before_backward(out, labels) if probe else None
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.cam_stage.scale_classifier_gradient()
            clip = self.warmup.grad_clip(global_step)
            if probe:
                scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
                if self.cam_stage.coupled_logit_cap > 0:
                    row["coupled_brake"] = self.cam_stage.last_brake
                if self.cam_stage.coupled_feature_brake > 0:
                    row["coupled_feature_share"] = self.model.last_coupled_feature_share
                if self.cam_stage.coupled_input_brake > 0:
                    row["coupled_input_brake"] = self.cam_stage.last_input_brake
                if self.cam_stage.coupled_weight_cap > 0:  # the factor of the previous step
                    row["coupled_weight_factor"] = self.cam_stage.last_weight_factor
                self.diagnostics.after_backward(row, step, epoch, clip, scale)
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                self.cam_stage.clip(clip)
            self.scaler.step(self.optimizer)
            self.cam_stage.cap_coupled_weights()
            self.scaler.update()
            self.scheduler.step()
            n = labels.shape[0]
            sums[0] += loss.item() * n
            sums[1] += parts["loss_cls"] * n
            sums[2] += (out.logits.argmax(1) == labels).sum().item()
            sums[3] += n
            bar.set_postfix(loss=f"{sums[0] / sums[3]:.3f}", acc=f"{sums[2] / sums[3]:.3f}")
            bar.update(1)
        bar.close()
        if self.diagnostics is not None:
            self.diagnostics.flush()
        loss, cls_loss, correct, seen = self.ctx.sum(sums)
        seen = max(seen, 1.0)
        return {"train_loss": loss / seen, "train_loss_cls": cls_loss / seen, "train_accuracy": correct / seen}

    def _recalibrate_batchnorm(self, epoch: int) -> int:
        """Precise BN: statistics of the epoch's final weights on shuffled training images, so
        that validation, best.pt and last.pt all see the statistics that belong to the weights."""
        from ..data import collate_skip_bad

        generator = torch.Generator().manual_seed(self.options.seed * 1_009 + epoch)
        loader = DataLoader(
            self.batchnorm_set,
            batch_size=max(2, self.train_loader.batch_size),
            shuffle=True,
            generator=generator,
            num_workers=self.options.workers,
            collate_fn=collate_skip_bad,
        )
        batches = (batch["image"] for batch in loader if batch is not None)
        seen = recalibrate_batchnorm(
            self.model, batches, max_images=self.batchnorm["precise_bn_images"], device=self.ctx.device
        )
        self.batchnorm["recalibrated_images"] = seen
        return seen

    def _validate(self) -> dict:
        from ..evaluate import evaluate_dataset

        result = evaluate_dataset(
            self.model,
            self.val_set,
            num_classes=len(self.class_names),
            device=self.ctx.device,
            batch_size=max(1, self.options.batch_size),
            workers=self.options.workers,
            desc="validate",
        )
        record = {
            "val_accuracy": result["accuracy"],
            "val_accuracy_detection_branch": result["accuracy_detection_branch"],
        }
        if "detection" in result:
            record["val_detection_f"] = result["detection"]["f"]
            record["val_detection_mae"] = result["detection"]["mae"]
        return record

    def _save(self, epoch: int, record: dict) -> None:
        self.history.append(record)
        score = record.get("val_accuracy", record["train_accuracy"])
        improved = score > self.best["score"]
        if improved:
            self.best = {"epoch": epoch, "score": score}
        metrics = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        common = dict(
            class_names=self.class_names,
            input_size=self.options.img_size,
            epoch=epoch,
            metrics=metrics,
            contract=input_contract(self.options),
            data_source=self.options.to_dict(),
            batchnorm=dict(self.batchnorm),
        )
        state = train_state(self.options, epoch, self.optimizer, self.scheduler, self.scaler, self.best, self.history)
        save_checkpoint(self.out / "last.pt", make_checkpoint(self.model, train_state=state, **common))
        if improved:
            save_checkpoint(self.out / "best.pt", make_checkpoint(self.model, **common))
        # rewritten from the history, not appended: a resumed or replaced run never repeats an epoch
        atomic_write_text(self.out / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        atomic_write_text(
            self.out / "history.json",
            json.dumps({"options": self.options.to_dict(), "best": self.best, "epochs": self.history}, indent=2),
        )
        shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
        log.info(shown + ("  *best*" if improved else ""))


def input_contract(options: TrainOptions) -> InputContract:
    """The contract this run trains under (ImageNet mean/std, the chosen geometry)."""
    return InputContract(options.img_size, geometry=options.geometry)


def build_datasets(options: TrainOptions):
    from ..data import ImageDataset, eval_transform, load_index, train_transform

    common = dict(layout=options.layout, fold=options.fold, seed=options.split_seed, csv_file=options.csv_file)
    train_index = load_index(options.data, split="train", **common)
    if not len(train_index):
        raise UserError(f"{options.data}: no training images found")
    if any(s.label < 0 for s in train_index.samples):
        raise UserError(f"{options.data}: this set has no class labels; it cannot be trained on")
    val_index = load_index(options.data, split="val", **common)
    contract = input_contract(options)
    train_set = ImageDataset(train_index, train_transform(contract, options.augment))
    with_maps = any(s.gt_map is not None for s in val_index.samples)
    val_set = ImageDataset(val_index, eval_transform(contract), with_maps=with_maps)
    return train_set, val_set, list(train_index.class_names)


def batchnorm_dataset(train_set, contract: InputContract):
    """The training images as evaluation sees them (the contract's view, no crop or flip): the
    statistics eval mode normalises with. Random crops zoom in by 8/7, and statistics taken
    through them made a short MobileNetV3 run lose 13 points of eval-mode accuracy."""
    from ..data import ImageDataset, eval_transform

    return ImageDataset(train_set.index, eval_transform(contract))


def build_optimizer(model: WSCNet, options: TrainOptions) -> torch.optim.Optimizer:
    backbone, new = model.parameter_groups()
    groups = [{"params": backbone, "lr": options.lr}, {"params": new, "lr": options.head_lr}]
    return torch.optim.SGD(groups, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)


def lr_factor(step: int, steps_per_epoch: int, options: TrainOptions) -> float:
    """Multiplier of both base rates after ``step`` optimizer steps (stepped every batch)."""
    epoch = step / max(1, steps_per_epoch)
    warm = options.warmup_epochs
    factor = min(1.0, (step + 1) / (warm * steps_per_epoch)) if warm > 0 else 1.0
    if options.lr_schedule == "step":
        return factor * options.lr_gamma ** (int(epoch) // options.lr_step)
    progress = min(1.0, epoch / options.epochs)
    return factor * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, options: TrainOptions, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, options))
