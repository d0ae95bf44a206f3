"""Sentiment maps for display and detection metrics: M upsampled to the image, min–max to [0, 1]."""

import torch
import torch.nn.functional as F


def normalised_maps(sentiment_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N×h×w (or N×1×h×w) -> N×H×W in [0, 1], bilinear, each map min–max normalised."""
    if sentiment_map.dim() == 3:
        sentiment_map = sentiment_map.unsqueeze(1)
    up = F.interpolate(sentiment_map.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = up.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(up)
