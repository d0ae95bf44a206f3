"""Lean runtime: exported model on camera/video frames with the sentiment overlay. Imports no torch, no wscnet.

The public API (``from runtime import Model``) is imported on first use, so ``cli.py`` stays quick.
"""

import importlib

__all__ = ["Controls", "Model", "Pipeline", "PipelineOptions", "Prediction"]
_HOMES = {
    "Model": "api",
    "Prediction": "model",
    "Controls": "controls",
    "Pipeline": "pipeline",
    "PipelineOptions": "pipeline",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
