"""The live server as a sink of a pipeline: every stream's rendered frames, records and events go to
the page under the stream's own name, and the page's controls are the streams' overlay controls."""

import webbrowser
from collections import Counter

from ..events import MODEL_RELOADED
from ..sinks import Sink
from .info import model_info
from .server import LiveServer


class LiveSink(Sink):
    name = "live"

    def __init__(self, server: LiveServer, stream, hub: str, describe_model=None) -> None:
        self.server, self.stream, self.hub = server, stream, hub
        self.describe_model = describe_model  # () -> /info's model part, asked again after a model swap

    def write(self, frame, prediction) -> None:
        self.server.publish(frame, prediction.to_dict(), stream=self.hub, dropped=self.stream.stats.dropped)

    def event(self, event) -> None:
        if event.type == MODEL_RELOADED and self.describe_model is not None:
            self.server.model_info = self.describe_model()
        self.server.publish_event(event.to_dict(), stream=self.hub)


def serve_pipeline(pipeline, serve: dict, resize: str | None = None, on_reload=None) -> LiveServer:
    """Start a LiveServer (``serve``: host, port, token, max_clients) for every stream of ``pipeline``;
    ``on_reload`` answers ``POST /model/reload`` (None or the reason a new file was refused)."""
    serve = dict(serve)
    open_browser = serve.pop("open_browser", False)

    def describe_model() -> dict:
        model = pipeline.model  # the one running now: a reload swaps it
        return model_info(model.metadata, model.description, resize, getattr(model.backend, "choice", None))

    server = LiveServer(
        **serve,
        model_info=describe_model(),
        streams=[s.name for s in pipeline.streams],
        controls=pipeline.streams[0].controls,
    )
    server.on_reload = on_reload
    server.output_counters = lambda: _output_counters(pipeline)
    events = getattr(pipeline.options, "events", None)
    server.clips_dir = events.clips.folder if events is not None and events.clips is not None else None
    server.start()
    if open_browser:
        webbrowser.open(server.url)  # does nothing where no browser is known
    for stream in pipeline.streams:
        stream.controls = server.controls  # one set of controls for the page and every stream
        stream.sinks.append(LiveSink(server, stream, stream.name, describe_model))
    return server


SHARED_OUTPUTS = "*"  # the stream label of an output several streams share (a webhook): counted once


def _output_counters(pipeline) -> dict:
    """{stream: {output: counters}} for /metrics; an output shared by several streams appears once,
    under ``SHARED_OUTPUTS``, so that summing over streams does not count it twice."""
    owners = Counter(id(sink) for stream in pipeline.streams for sink in stream.sinks)
    figures: dict = {}
    for stream in pipeline.streams:
        for sink in list(stream.sinks):
            counters = sink.counters()
            if counters:
                key = stream.name if owners[id(sink)] == 1 else SHARED_OUTPUTS
                figures.setdefault(key, {})[sink.name] = counters
    return figures
