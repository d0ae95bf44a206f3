"""Seeded, class-stratified splits that depend only on the seed and the set's contents.

Samples are sorted by path before shuffling, so the same files give the same split whatever
order the file system lists them in.
"""

import numpy as np

from wscnet.data.index import Sample


def _by_class(samples: list[Sample]) -> dict[int, list[Sample]]:
    groups: dict[int, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: str(s.path)):
        groups.setdefault(s.label, []).append(s)
    return groups


def split_fractions(samples: list[Sample], fractions: dict[str, float], seed: int) -> dict[str, list[Sample]]:
    """Split each class by ``fractions`` (name -> share, summing to 1); order-independent."""
    names = list(fractions)
    parts: dict[str, list[Sample]] = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    for _label, group in sorted(_by_class(samples).items()):
        order = rng.permutation(len(group))
        start = 0
        for name, count in zip(names, _counts(len(group), [fractions[n] for n in names])):
            parts[name].extend(group[i] for i in order[start : start + count])
            start += count
    for name in names:
        parts[name].sort(key=lambda s: str(s.path))
    return parts


def _counts(n: int, fractions: list[float]) -> list[int]:
    """Part sizes summing to n; a part with a non-zero share gets at least one item when the
    largest part can spare it, so tiny sets still have a val and a test sample per class."""
    bounds = np.rint(np.cumsum(fractions) * n).astype(int)
    bounds[-1] = n
    counts = np.diff(bounds, prepend=0)
    for i, share in enumerate(fractions):
        if share > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts.tolist()


def hold_out(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(rest, held_out): a seeded, class-stratified ``fraction`` of ``samples`` held out."""
    parts = split_fractions(samples, {"rest": 1.0 - fraction, "held": fraction}, seed)
    return parts["rest"], parts["held"]


def pick_split(
    split: str, train: list[Sample], test: list[Sample], seed: int, val_fraction: float = 0.1
) -> list[Sample]:
    """For sets that ship train/test: val is a seeded share of train, "train" the rest."""
    if split == "test":
        return test
    if split == "all":
        return sorted(train + test, key=lambda s: str(s.path))
    rest, val = hold_out(train, val_fraction, seed)
    return rest if split == "train" else val
