"""The live server as one more per-stream sink of ``runtime.pipeline.Pipeline``: each rendered
frame and its JSONL record go to the page, and the page's controls (opacity, smoothing, map on/off)
become the stream's overlay controls for the next frame."""

from .controls import Controls, OverlaySettings
from .info import model_info
from .server import LiveServer


class LiveSink:
    def __init__(self, server: LiveServer, stream, hub: str) -> None:
        self.server, self.stream, self.hub = server, stream, hub

    def write(self, frame, prediction) -> None:
        self.server.publish(frame, prediction.to_dict(), stream=self.hub, dropped=self.stream.stats.dropped)
        settings = self.server.controls.current()
        controls = self.stream.controls
        controls.opacity, controls.smooth, controls.show_map = settings.opacity, settings.smoothing, settings.map


def serve_pipeline(pipeline, serve: dict, resize: str | None = None) -> LiveServer:
    """Start a LiveServer (``serve``: host, port, token, max_clients) for every stream of ``pipeline``."""
    model, options = pipeline.model, pipeline.options
    info = model_info(model.metadata, model.description, resize)
    hubs = [str(i) for i in range(len(pipeline.streams))]
    server = LiveServer(**serve, model_info=info, streams=hubs,
                        controls=Controls(OverlaySettings(options.opacity, options.smooth)))
    server.start()
    for hub, stream in zip(hubs, pipeline.streams):
        stream.sinks.append(LiveSink(server, stream, hub))
    return server
