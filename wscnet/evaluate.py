"""Evaluate a model on a data set: accuracy of both branches, per class and confusion; where the
set has them, detection (Otsu-binarised maps vs ground truth, Eq. 8-9, error modes) and
emotional-attention metrics (fixation maps)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import atomic_write_text
from .maps import normalised_maps
from .training.distributed import pick_device


@torch.no_grad()
def evaluate_dataset(
    model,
    dataset,
    *,
    num_classes: int,
    device="cpu",
    batch_size: int = 32,
    workers: int = 0,
    ten_crop_dataset=None,
    desc: str = "evaluate",
) -> dict:
    """Metrics of ``model`` (a WSCNet) on ``dataset`` (an ImageDataset of whole images).

    With ``ten_crop_dataset`` (same samples, ten crops each) the class decisions of both
    branches come from softmax averaged over the crops; maps always come from the whole image.
    """
    from .metrics import AttentionAccumulator, DetectionAccumulator

    model.eval()
    device = torch.device(device)
    probs, det_probs, labels, indices = [], [], [], []
    detection, attention = DetectionAccumulator(), AttentionAccumulator()
    for batch in _batches(dataset, batch_size, workers, desc):
        out = model(batch["image"].to(device))
        probs.append(torch.softmax(out.logits.float(), 1).cpu())
        det_probs.append(torch.softmax(out.det_logits.float(), 1).cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
        if "gt_map" in batch or "fixation" in batch:
            size = tuple(batch["image"].shape[-2:])
            maps = normalised_maps(out.sentiment_map.float(), size).cpu().numpy()
            for kind in ("gt_map", "fixation"):
                if kind not in batch:
                    continue
                truth = batch[kind].numpy()
                for i in np.flatnonzero(batch[f"has_{kind}"].numpy()):
                    (detection if kind == "gt_map" else attention).add(maps[i], truth[i])
    if not labels:
        from .errors import UserError

        raise UserError("no readable images to evaluate")
    probs, det_probs = torch.cat(probs), torch.cat(det_probs)
    labels, indices = torch.cat(labels), torch.cat(indices)
    if ten_crop_dataset is not None:
        probs, det_probs = _ten_crop_probs(model, ten_crop_dataset, indices, batch_size, workers, device)
    result = _classification(probs, det_probs, labels, num_classes)
    found = detection.result()
    if found["count"]:
        result["detection"] = {k: found[k] for k in ("mae", "precision", "recall", "f")}
        result["error_modes"] = found["error_modes"]
    if attention.rows:
        result["attention"] = {k: v for k, v in attention.result().items() if k != "count"}
    result["num_images"] = int(labels.numel())
    result["ten_crop"] = ten_crop_dataset is not None
    return result


def _batches(dataset, batch_size: int, workers: int, desc: str):
    from .data import collate_skip_bad

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_bad)
    for batch in tqdm(loader, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True):
        if batch is not None:
            yield batch


def _ten_crop_probs(model, dataset, indices, batch_size, workers, device):
    """Softmax of both branches averaged over ten crops, in the order of ``indices``."""
    by_index: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for batch in _batches(dataset, max(1, batch_size // 10), workers, "ten-crop"):
        crops = batch["image"]  # N×10×3×S×S
        n = crops.shape[0]
        # at most batch_size crops per forward pass: memory as without --ten-crop
        outs = [model(part.to(device)) for part in crops.flatten(0, 1).split(max(1, batch_size))]
        logits = torch.cat([o.logits.float() for o in outs])
        det_logits = torch.cat([o.det_logits.float() for o in outs])
        p = torch.softmax(logits, 1).view(n, -1, logits.shape[1]).mean(1).cpu()
        d = torch.softmax(det_logits, 1).view(n, -1, logits.shape[1]).mean(1).cpu()
        for j, idx in enumerate(batch["index"].tolist()):
            by_index[idx] = (p[j], d[j])
    kept = [i for i in indices.tolist() if i in by_index]
    return (torch.stack([by_index[i][0] for i in kept]), torch.stack([by_index[i][1] for i in kept]))


def _classification(probs, det_probs, labels, num_classes: int) -> dict:
    from .metrics import classification_metrics

    labelled = labels >= 0
    if not labelled.any():  # e.g. EMOd: maps only
        return {}
    preds = probs.argmax(1)[labelled].numpy()
    det_preds = det_probs.argmax(1)[labelled].numpy()
    truth = labels[labelled].numpy()
    main = classification_metrics(preds, truth, num_classes)
    fused = ((probs + det_probs) / 2).argmax(1)[labelled].numpy()
    return {
        "accuracy": float(main["accuracy"]),
        "accuracy_detection_branch": float(classification_metrics(det_preds, truth, num_classes)["accuracy"]),
        "accuracy_fusion": float((fused == truth).mean()),
        "mean_class_accuracy": float(main["mean_class_accuracy"]),
        "per_class": _plain(main["per_class"]),
        "confusion": _plain(main["confusion"]),
    }


def _plain(value):
    """numpy arrays / scalars -> JSON-ready lists and floats."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def evaluate_checkpoint(
    ckpt_path,
    data,
    *,
    split: str = "test",
    layout=None,
    fold: int = 1,
    csv_file=None,
    split_seed: int = 0,
    ten_crop: bool = False,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    img_size: int | None = None,
) -> dict:
    """Classification under the checkpoint's input contract (what the runtime does with a frame);
    detection maps always over the whole image (squash), where the ground truth is."""
    from dataclasses import replace

    from .checkpoint import checkpoint_contract, load_checkpoint
    from .data import ImageDataset, eval_transform, load_index
    from .errors import UserError

    dev = pick_device(device)
    model, ckpt = load_checkpoint(ckpt_path, dev)
    index = load_index(data, split=split, layout=layout, fold=fold, seed=split_seed, csv_file=csv_file)
    if not len(index):
        raise UserError(f"{data}: no images in split {split!r}")
    labelled = any(s.label >= 0 for s in index.samples)
    if labelled and list(index.class_names) != list(ckpt["class_names"]):
        raise UserError(f"{data}: classes {index.class_names} differ from the checkpoint's {ckpt['class_names']}")
    contract = checkpoint_contract(ckpt, ckpt_path)
    if img_size:
        contract = replace(contract, input_size=img_size)
    check_eval_memory(ckpt["model_config"], contract.input_size, batch_size, workers, ten_crop)
    with_maps = any(s.gt_map is not None or s.fixation is not None for s in index.samples)
    whole = contract.with_geometry("squash")
    common = dict(num_classes=len(ckpt["class_names"]), device=dev, batch_size=batch_size, workers=workers)
    crops = _averaged_views(index, contract, ten_crop)
    if contract.geometry == "squash" or not with_maps:
        dataset = ImageDataset(index, eval_transform(contract), with_maps=with_maps)
        result = evaluate_dataset(model, dataset, ten_crop_dataset=crops, **common)
    else:
        result = evaluate_dataset(
            model, ImageDataset(index, eval_transform(contract)), ten_crop_dataset=crops, **common
        )
        maps = evaluate_dataset(
            model, ImageDataset(index, eval_transform(whole), with_maps=True), desc="maps (whole image)", **common
        )
        result.update({k: maps[k] for k in ("detection", "error_modes", "attention") if k in maps})
    result["ten_crop"] = ten_crop
    result.update(
        {
            "checkpoint": str(ckpt_path),
            "data": str(data),
            "split": split,
            "class_names": list(ckpt["class_names"]),
            "input_size": contract.input_size,
            "input_contract": contract.to_dict(),
            "model_config": ckpt["model_config"],
        }
    )
    return result


def check_eval_memory(model_config: dict, size: int, batch_size: int, workers: int, ten_crop: bool) -> None:
    """One line before any image is read when ``batch_size`` images at ``size`` will not fit."""
    from .memory import forward_bytes_per_image, largest_fitting, require

    image = 3 * size * size * 4
    per_image = forward_bytes_per_image(model_config, size)
    crops = 10 if ten_crop else 1

    def extra(batch: int) -> int:  # forward pass + the loader's batches in flight (ten crops each)
        loaded = max(1, batch // crops) * crops if ten_crop else batch
        return batch * per_image + loaded * image * (1 + 2 * workers)

    smaller = [b for b in (32, 16, 8, 4, 2, 1) if b < batch_size]
    best = largest_fitting(extra, [batch_size, *smaller])
    if best != batch_size:
        fix = f"--batch-size {best} would fit" if best else "even --batch-size 1 does not fit on this machine"
        what = f"eval at {size} px, batch {batch_size}{' (ten crops)' if ten_crop else ''}"
        require(what, extra(batch_size), fix)


def _averaged_views(index, contract, ten_crop: bool):
    """The dataset whose softmax is averaged per picture: the paper's ten crops, or the
    contract's views (as the runtime averages them), or None for a single view."""
    from .data import ImageDataset, ten_crop_transform, views_transform

    if ten_crop:
        return ImageDataset(index, ten_crop_transform(contract))
    return ImageDataset(index, views_transform(contract)) if len(contract.views) > 1 else None


def format_table(result: dict) -> str:
    lines = [
        f"images {result.get('num_images', 0)}  split {result.get('split', '?')}"
        f"{'  ten-crop' if result.get('ten_crop') else ''}"
    ]
    if "accuracy" in result:
        lines.append(f"accuracy (classification branch)  {result['accuracy']:.4f}")
        lines.append(f"accuracy (detection branch)       {result['accuracy_detection_branch']:.4f}")
        lines.append(f"accuracy (fusion of both)         {result['accuracy_fusion']:.4f}")
        names = result.get("class_names") or [str(i) for i in range(len(result["confusion"]))]
        per_class = result["per_class"]
        lines.append(
            "per class: "
            + "  ".join(
                f"{name} {'-' if per_class[i] is None else format(per_class[i], '.3f')}" for i, name in enumerate(names)
            )
        )
        width = max(len(n) for n in names)
        lines.append("confusion (rows: truth, columns: prediction)")
        for name, row in zip(names, result["confusion"]):
            lines.append(f"  {name:<{width}} " + " ".join(f"{int(v):5d}" for v in row))
    if "detection" in result:
        d = result["detection"]
        lines.append(f"detection  MAE {d['mae']:.4f}  P {d['precision']:.4f}  R {d['recall']:.4f}  F {d['f']:.4f}")
        fractions = result.get("error_modes", {}).get("fractions", {})
        lines.append("error modes " + "  ".join(f"{k} {v:.3f}" for k, v in fractions.items()))
    if "attention" in result:
        lines.append("attention  " + "  ".join(f"{k} {v:.4f}" for k, v in result["attention"].items()))
    return "\n".join(lines)


def write_json(path, result: dict) -> None:
    atomic_write_text(Path(path), json.dumps(result, indent=2))
