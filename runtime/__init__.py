"""Lean runtime: exported model on camera/video frames with the sentiment overlay. Imports no torch, no wscnet.

The public API (``from runtime import Model``) is imported on first use, so ``cli.py`` stays quick.
"""

__all__ = ["Controls", "Model", "Pipeline", "PipelineOptions", "Prediction"]


def __getattr__(name: str):
    if name in ("Model", "Prediction"):
        from . import api

        return getattr(api, name)
    if name in ("Controls", "Pipeline", "PipelineOptions"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
