"""The runtime as a library: open an exported model, predict on frames, stream a source.

    from runtime import Model

    with Model("model.int8.onnx") as model:           # .onnx or .engine; device="auto" | "cpu" | "cuda" | "tensorrt"
        p = model.predict("photo.jpg")                # or a BGR numpy frame
        print(p.label, p.score, p.top(3))             # "amusement", 0.91, [("amusement", 0.91), ...]
        for frame, p in model.stream("clip.mp4"):     # anything ``webcam --source`` takes
            print(p.index, p.label, p.timings)
            cv2.imwrite("overlay.png", p.plot(frame))

This is the front of the runtime's layers: ``runtime.model`` (the model and its predictions) →
``runtime.pipeline`` (capture, batching, overlay, sinks) → here. ``cli.py webcam`` runs the same
pipeline (``runtime.video.run_videos``).
"""

import queue
import threading
from typing import Iterator

import numpy as np

from . import model as _model
from .model import Prediction
from .pipeline import POLL_S, Pipeline, PipelineOptions
from .sinks import Sink
from .sources import open_sources

__all__ = ["Model", "Prediction"]
_END = object()


class Model(_model.Model):
    __doc__ = _model.Model.__doc__

    def stream(self, source, *, keep_going: bool = False, **options) -> Iterator[tuple[np.ndarray, Prediction]]:
        """``(frame, prediction)`` for every frame of ``source`` (or of several: a list), as the
        pipeline delivers them (a file: every frame in order; a live source: the newest). Keyword
        options are ``PipelineOptions`` fields (``batch_size``, ``max_frames``, ``save``, ...)."""
        specs = [str(s) for s in source] if isinstance(source, (list, tuple)) else [str(source)]
        settings = {"display": False, "overlay": False, "progress": False, **options}
        pipeline = Pipeline(self, open_sources(specs, keep_going), PipelineOptions(**settings))
        yield from _consume(pipeline)


class _QueueSink(Sink):
    """Hands (frame, prediction) to ``Model.stream``'s consumer, waiting while it is busy."""

    def __init__(self, out: queue.Queue, pipeline: Pipeline) -> None:
        self.out, self.pipeline = out, pipeline

    def write(self, frame: np.ndarray, prediction: Prediction) -> None:
        while not self.pipeline.abort.is_set():
            try:
                self.out.put((frame, prediction), timeout=POLL_S)
                return
            except queue.Full:
                continue


def _consume(pipeline: Pipeline):
    """The pipeline in a background thread, its predictions yielded here."""
    out: queue.Queue = queue.Queue(maxsize=2)
    pipeline.add_sink(_QueueSink(out, pipeline))

    def work() -> None:
        try:
            pipeline.run()
        except BaseException as exc:
            pipeline.errors.append(exc)
        finally:
            out.put(_END)  # unbounded wait is fine: the consumer drains until _END

    runner = threading.Thread(target=work, name="stream", daemon=True)
    runner.start()
    try:
        while (item := out.get()) is not _END:
            yield item
    finally:
        if runner.is_alive():  # the consumer left early: stop everything, let the threads out
            pipeline.abort.set()
            pipeline.stop.set()
            while runner.is_alive():
                try:
                    out.get(timeout=POLL_S)
                except queue.Empty:
                    pass
        runner.join()
    if pipeline.errors:
        raise pipeline.errors[0]
