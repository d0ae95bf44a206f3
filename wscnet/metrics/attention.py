"""Emotional-attention metrics on EMOd, after the MIT saliency benchmark's definitions
(Bylinskii et al., "What do different evaluation metrics tell us about saliency models?").

``pred_map``: predicted saliency, any non-negative H×W array. Fixations come either as
``fixation_points`` (H×W, non-zero at fixated pixels) or as a ``fixation_map``:

- a binary map (two values, 0 and one other) is taken as fixation points, and the density map
  for CC, SIM and KL is those points blurred by a Gaussian (sigma = ``DENSITY_SIGMA`` × the
  longer side, about one degree of visual angle in the usual set-ups);
- a continuous map (EMOd's "continuous" fixation maps) is the density itself, and, without
  ``fixation_points``, the points for the AUCs are its top ``POINTS_TOP_FRACTION`` of pixels.
  That is an approximation: pass the real points when the set has them.

Location-based: AUC-Judd, AUC-Borji. Distribution-based: CC, SIM, KL, and EMD (optional,
``with_emd=True``: an exact transport problem on maps pooled to ``EMD_SIDE``², needs SciPy).
"""

import numpy as np

EPS = np.finfo(np.float64).eps  # the benchmark's eps (2.2204e-16)
DENSITY_SIGMA = 0.03
POINTS_TOP_FRACTION = 0.02
EMD_SIDE = 16


# --- normalisations --------------------------------------------------------------------------


def _unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _unit_sum(x: np.ndarray) -> np.ndarray:
    x = x - min(x.min(), 0.0)
    s = x.sum()
    return x / s if s > 0 else np.full_like(x, 1.0 / x.size)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with zero padding (numpy only)."""
    radius = max(1, int(round(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, x)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, rows)


def fixation_inputs(fixation_map, fixation_points=None) -> tuple[np.ndarray, np.ndarray]:
    """(boolean fixation points, density map) from what the data set provides."""
    fmap = np.asarray(fixation_map, dtype=np.float64)
    values = np.unique(fmap)
    binary = values.size <= 2 and values.min() == 0
    if fixation_points is not None:
        points = np.asarray(fixation_points) > 0
    elif binary:
        points = fmap > 0
    else:
        cut = np.quantile(fmap, 1.0 - POINTS_TOP_FRACTION)
        points = fmap >= cut if cut > fmap.min() else fmap > fmap.min()
    density = gaussian_blur(points.astype(np.float64), DENSITY_SIGMA * max(fmap.shape)) if binary else fmap
    return points, density


# --- location-based metrics -------------------------------------------------------------------


def auc_judd(sal: np.ndarray, points: np.ndarray, jitter: bool = True) -> float:
    """Thresholds at the saliency of each fixation; TP = fixations above, FP = other pixels above."""
    s = _unit_range(np.asarray(sal, dtype=np.float64))
    if jitter:  # as the benchmark does: break ties of flat maps with a tiny (seeded) noise
        s = _unit_range(s + np.random.default_rng(0).random(s.shape) * 1e-7)
    fix = s[points]
    n_fix, n_pix = fix.size, s.size
    if n_fix == 0 or n_fix == n_pix:
        return float("nan")
    thresholds = np.sort(fix)[::-1]
    ranked = np.sort(s.ravel())[::-1]
    above = np.searchsorted(-ranked, -thresholds, side="right")  # pixels with s >= threshold
    tp = np.concatenate([[0.0], np.arange(1, n_fix + 1) / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - np.arange(1, n_fix + 1)) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp))


def auc_borji(sal: np.ndarray, points: np.ndarray, splits: int = 100, step: float = 0.1, seed: int = 0) -> float:
    """Negatives are pixels drawn uniformly at random (``splits`` draws of as many as fixations)."""
    s = _unit_range(np.asarray(sal, dtype=np.float64))
    fix = s[points]
    if fix.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    flat = s.ravel()
    aucs = []
    for _ in range(splits):
        rand = flat[rng.integers(0, flat.size, fix.size)]
        thresholds = np.arange(0.0, max(fix.max(), rand.max()) + step / 2, step)[::-1]
        tp = np.concatenate([[0.0], (fix[None, :] >= thresholds[:, None]).mean(1), [1.0]])
        fp = np.concatenate([[0.0], (rand[None, :] >= thresholds[:, None]).mean(1), [1.0]])
        aucs.append(np.trapezoid(tp, fp))
    return float(np.mean(aucs))


# --- distribution-based metrics ---------------------------------------------------------------


def cc(sal: np.ndarray, density: np.ndarray) -> float:
    """Pearson's linear correlation of the two maps."""
    a, b = _standardise(np.asarray(sal, np.float64)), _standardise(np.asarray(density, np.float64))
    return float((a * b).mean())


def sim(sal: np.ndarray, density: np.ndarray) -> float:
    """Histogram intersection of the two maps as distributions (1 = identical)."""
    return float(np.minimum(_unit_sum(np.asarray(sal, np.float64)), _unit_sum(np.asarray(density, np.float64))).sum())


def kl(sal: np.ndarray, density: np.ndarray) -> float:
    """KL(fixation density || prediction), the benchmark's eps-regularised form (0 = identical)."""
    p, q = _unit_sum(np.asarray(sal, np.float64)), _unit_sum(np.asarray(density, np.float64))
    return float((q * np.log(EPS + q / (p + EPS))).sum())


def _pool(x: np.ndarray, side: int) -> np.ndarray:
    h, w = x.shape
    rows = np.array_split(np.arange(h), min(side, h))
    cols = np.array_split(np.arange(w), min(side, w))
    return np.array([[x[np.ix_(r, c)].sum() for c in cols] for r in rows])


def emd(sal: np.ndarray, density: np.ndarray, side: int = EMD_SIDE) -> float:
    """Earth mover's distance between the two maps as unit-mass distributions, pooled to
    side×side cells, ground distance in cell units (exact LP; needs SciPy)."""
    from scipy import sparse  # only EMD needs SciPy
    from scipy.optimize import linprog

    a = _unit_sum(_pool(np.asarray(sal, np.float64), side)).ravel()
    b = _unit_sum(_pool(np.asarray(density, np.float64), side)).ravel()
    h, w = min(side, np.shape(sal)[0]), min(side, np.shape(sal)[1])
    yy, xx = np.divmod(np.arange(h * w), w)
    cost = np.hypot(yy[:, None] - yy[None, :], xx[:, None] - xx[None, :]).ravel()
    n = a.size
    # flow[i, j] >= 0 with row sums a and column sums b (equal total mass: balanced transport)
    eq_rows = sparse.kron(sparse.eye(n), np.ones((1, n)))
    eq_cols = sparse.kron(np.ones((1, n)), sparse.eye(n))
    a_eq = sparse.vstack([eq_rows, eq_cols]).tocsr()[:-1]  # one constraint is redundant
    res = linprog(cost, A_eq=a_eq, b_eq=np.concatenate([a, b])[:-1], bounds=(0, None), method="highs")
    return float(res.fun) if res.success else float("nan")


def attention_metrics(pred_map, fixation_map, fixation_points=None, with_emd: bool = False) -> dict:
    """dict(auc_judd, auc_borji, cc, sim, kl[, emd]) of one image; maps must share their shape."""
    sal = np.asarray(pred_map, dtype=np.float64)
    if sal.shape != np.shape(fixation_map):
        raise ValueError(f"predicted map {sal.shape} and fixation map {np.shape(fixation_map)} differ in shape")
    points, density = fixation_inputs(fixation_map, fixation_points)
    out = {
        "auc_judd": auc_judd(sal, points),
        "auc_borji": auc_borji(sal, points),
        "cc": cc(sal, density),
        "sim": sim(sal, density),
        "kl": kl(sal, density),
    }
    if with_emd:
        out["emd"] = emd(sal, density)
    return out


class AttentionAccumulator:
    """Average attention_metrics over images (NaNs, e.g. an image without fixations, skipped)."""

    def __init__(self, with_emd: bool = False):
        self.with_emd = with_emd
        self.rows: list[dict] = []

    def add(self, pred_map, fixation_map, fixation_points=None) -> dict:
        row = attention_metrics(pred_map, fixation_map, fixation_points, self.with_emd)
        self.rows.append(row)
        return row

    def result(self) -> dict:
        keys = ("auc_judd", "auc_borji", "cc", "sim", "kl") + (("emd",) if self.with_emd else ())
        out = {}
        for key in keys:
            values = [r[key] for r in self.rows if np.isfinite(r[key])]
            out[key] = float(np.mean(values)) if values else float("nan")
        out["count"] = len(self.rows)
        return out
