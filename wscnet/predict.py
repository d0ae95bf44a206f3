"""Predict single images: label, class probabilities, and the sentiment map over the image."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from .atomic import atomic_write_bytes
from .errors import UserError


def overlay_map(rgb: np.ndarray, smap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB H×W×3 uint8 + map H×W in [0, 1] -> BGR uint8, jet colour map blended over the image."""
    heat = cv2.applyColorMap((np.clip(smap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1.0 - alpha, heat, alpha, 0.0)


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
    from .checkpoint import checkpoint_contract, load_checkpoint
    from .data import eval_transform, open_rgb

    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    model, ckpt = load_checkpoint(checkpoint, dev)
    names = list(ckpt["class_names"])
    transform = eval_transform(checkpoint_contract(ckpt, checkpoint))
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    results = []
    for path in map(Path, images):
        image = open_rgb(path) if path.is_file() else None
        if image is None:
            reason = "file not found" if not path.exists() else "unreadable image"
            print(f"warning: {path}: {reason}; skipped", file=sys.stderr)
            results.append({"image": str(path), "label": None, "error": reason})
            continue
        out = model(transform(image).unsqueeze(0).to(dev))
        probs = torch.softmax(out.logits.float(), 1)[0].cpu()
        det = torch.softmax(out.det_logits.float(), 1)[0].cpu()
        result = {
            "image": str(path),
            "label": names[int(probs.argmax())],
            "label_index": int(probs.argmax()),
            "confidence": float(probs.max()),
            "probabilities": {n: float(p) for n, p in zip(names, probs)},
            "detection_label": names[int(det.argmax())],
            "detection_probabilities": {n: float(p) for n, p in zip(names, det)},
        }
        if out_dir is not None:
            rgb = np.asarray(image)
            smap = map_over_picture(out.sentiment_map[0, ...].float().cpu().numpy(), transform, rgb.shape[:2])
            target = out_dir / f"{path.stem}_map.png"
            ok, png = cv2.imencode(".png", overlay_map(rgb, smap))
            if not ok:
                raise UserError(f"{target}: could not encode the overlay")
            atomic_write_bytes(target, png.tobytes())
            result["overlay"] = str(target)
        results.append(result)
    return results


def format_predictions(results: list[dict], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(results, indent=2)
    lines = []
    for r in results:
        if r.get("label") is None:
            lines.append(f"{r['image']}: skipped ({r['error']})")
            continue
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        shown = "  ".join(f"{n} {p:.3f}" for n, p in top)
        extra = f"  -> {r['overlay']}" if "overlay" in r else ""
        lines.append(f"{r['image']}: {r['label']} ({shown}){extra}")
    return "\n".join(lines)
