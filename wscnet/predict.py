"""Predict single images: label, class probabilities, and the sentiment map over the image."""

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from .atomic import atomic_write_bytes
from .errors import UserError
from .training.distributed import pick_device


def overlay_map(rgb: np.ndarray, smap: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """RGB H×W×3 uint8 + map H×W in [0, 1] -> BGR uint8, jet colour map blended over the image."""
    heat = cv2.applyColorMap((np.clip(smap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1.0 - opacity, heat, opacity, 0.0)


def map_over_picture(sentiment_map, transform, shape: tuple[int, int]) -> np.ndarray:
    """The h×w map over the H×W picture, placed as the input contract placed the picture (zeros
    where the model did not look, e.g. outside a centre crop)."""
    from runtime.overlay import map_to_frame

    h, w = shape
    geo = transform.pre.geometry(w, h)
    fx, fy, fw, fh = geo.frame_rect
    full = np.zeros((h, w), dtype=np.float32)
    full[fy : fy + fh, fx : fx + fw] = map_to_frame(sentiment_map, geo)
    return full


@torch.no_grad()
def predict_images(checkpoint, images, out_dir=None, device: str = "auto") -> list[dict]:
    """One dict per image: label, probabilities (both branches), overlay path; or an error."""
    from runtime.validate import check_output_folder

    from .checkpoint import checkpoint_contract, load_checkpoint
    from .data import eval_transform, open_rgb, views_transform
    from .data.dataset import report_bad_file

    out_dir = Path(out_dir) if out_dir is not None else None
    check_output_folder(out_dir, "--out")
    images = expand_inputs(images)
    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint, dev)
    names = list(ckpt["class_names"])
    contract = checkpoint_contract(ckpt, checkpoint)
    transform, views = eval_transform(contract), views_transform(contract)
    results = []
    for path in images:
        image = open_rgb(path) if path.is_file() else None  # open_rgb reports a bad file once
        if image is None:
            reason = "unreadable image" if path.exists() else "file not found"
            if not path.exists():
                report_bad_file(path, reason)
            results.append({"image": str(path), "label": None, "error": reason})
            continue
        # every view of the contract in one batch, scores averaged, the map from the first view:
        # what the runtime and eval do with the same picture
        out = model(views(image).to(dev))
        result = {"image": str(path), **prediction_fields(out, names)}
        if out_dir is not None:
            result["overlay"] = str(write_overlay(out_dir / f"{path.stem}_map.png", out, transform, np.asarray(image)))
        results.append(result)
    return results


def prediction_fields(out, names: list[str]) -> dict:
    """One image's label, confidence and both branches' probabilities, averaged over its views."""
    probs = torch.softmax(out.logits.float(), 1).mean(0).cpu()
    det = torch.softmax(out.det_logits.float(), 1).mean(0).cpu()
    return {
        "label": names[int(probs.argmax())],
        "label_index": int(probs.argmax()),
        "confidence": float(probs.max()),
        "probabilities": {n: float(p) for n, p in zip(names, probs)},
        "detection_label": names[int(det.argmax())],
        "detection_probabilities": {n: float(p) for n, p in zip(names, det)},
    }


def write_overlay(target: Path, out, transform, rgb: np.ndarray) -> Path:
    """The sentiment map over the whole picture, as a PNG written atomically."""
    smap = map_over_picture(out.sentiment_map[0, ...].float().cpu().numpy(), transform, rgb.shape[:2])
    ok, png = cv2.imencode(".png", overlay_map(rgb, smap))
    if not ok:
        raise UserError(f"{target}: could not encode the overlay")
    atomic_write_bytes(target, png.tobytes())
    return target


def expand_inputs(paths) -> list[Path]:
    """Files as given; a folder becomes the images in it (refused when it holds none)."""
    from .data.index import IMAGE_EXTENSIONS, list_images

    expanded = []
    for path in map(Path, paths):
        if not path.is_dir():
            expanded.append(path)
            continue
        found = list_images(path)
        if not found:
            raise UserError(f"{path}: a folder with no images in it ({', '.join(IMAGE_EXTENSIONS)})")
        expanded += found
    return expanded


def format_predictions(results: list[dict], as_json: bool = False) -> str:
    """JSON keeps every input (skipped ones with their error); lines show the predictions only,
    since a skipped input was already reported once on stderr."""
    if as_json:
        return json.dumps(results, indent=2)
    lines = []
    for r in results:
        if r.get("label") is None:
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        shown = "  ".join(f"{n} {p:.3f}" for n, p in top)
        extra = f"  -> {r['overlay']}" if "overlay" in r else ""
        lines.append(f"{r['image']}: {r['label']} ({shown}){extra}")
    return "\n".join(lines)
