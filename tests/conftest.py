"""Shared fixtures: small on-disk data sets written by the project's own synth API."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def user_facing_logging():
    """The packages' log lines as the command line shows them (``warning: …``), as cli.py sets up."""
    from cli_logging import setup_logging

    setup_logging()


@pytest.fixture(scope="session")
def make_roi_set(tmp_path_factory):
    """make_roi_set(n_per_class=4, size=64, seed=0) -> Path of a synthetic EmotionROI-layout set
    (6 classes, images/, ground_truth/, training_testing_split/). Cached per argument set."""
    from wscnet.synth import SynthConfig, write_synth_set

    cache: dict[tuple, Path] = {}

    def make(n_per_class: int = 4, size: int = 64, seed: int = 0) -> Path:
        key = (n_per_class, size, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"roi_{n_per_class}x{size}_s{seed}")
            cfg = SynthConfig(n_per_class=n_per_class, size=size, seed=seed)
            cache[key] = write_synth_set(out, cfg, progress=False)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_roi_set(make_roi_set) -> Path:
    """A 6-class synthetic EmotionROI-layout set: 4 images per class, 64×64 (read-only: share it)."""
    return make_roi_set(4, 64, 0)


@pytest.fixture(scope="session", autouse=True)
def device_choice_cache(tmp_path_factory):
    """``--device auto`` remembers its choices under $WSCNET_CACHE_DIR: a private folder for the
    tests (and the commands they start), never the user's ~/.cache."""
    import os

    from runtime.backends.probe import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous
