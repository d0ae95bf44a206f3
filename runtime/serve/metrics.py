"""``/metrics``: the live server's figures for Prometheus, through ``prometheus_client``.

Latency histograms are ``prometheus_client.Histogram``s observed once per frame; every other
figure (frames, drops, viewers, events, outputs' counters) is read from the server when scraped.
"""

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# seconds; Prometheus convention: base units, cumulative buckets, +Inf last
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus version scrapes
disable_created_metrics()  # no *_created samples: a scraper needs none of them


class ServerMetrics:
    def __init__(self, server) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.inference = Histogram(
            "wscnet_inference_seconds",
            "Model inference time per frame.",
            ["stream"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.end_to_end = Histogram(
            "wscnet_end_to_end_seconds",
            "Capture to overlaid frame, per frame.",
            ["stream"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.registry.register(_ServerCollector(server))

    def observe(self, stream: str, inference_s: float | None, end_to_end_s: float) -> None:
        """One frame's figures; ``inference_s`` None for a frame drawn with an earlier prediction."""
        if inference_s is not None:
            self.inference.labels(stream).observe(inference_s)
        self.end_to_end.labels(stream).observe(end_to_end_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ServerCollector:
    """Figures read at scrape time from the server's hubs, feeds and the outputs' counters."""

    def __init__(self, server) -> None:
        self.server = server

    def describe(self):
        return []

    def collect(self):
        yield from self._stream_families()
        yield from self._viewer_families()
        outputs = CounterMetricFamily(
            "wscnet_output_events",
            "What each output counted (written, dropped, ...).",
            labels=["stream", "output", "what"],
        )
        for stream, by_output in self.server.output_counters().items():
            for output, counters in by_output.items():
                for what, value in counters.items():
                    outputs.add_metric([stream, output, what], value)
        yield outputs
        yield GaugeMetricFamily(
            "wscnet_max_clients", "Viewers allowed at once, per kind and stream.", value=self.server.max_clients
        )

    def _stream_families(self):
        frames = CounterMetricFamily("wscnet_frames", "Frames the pipeline published.", labels=["stream"])
        fps = GaugeMetricFamily("wscnet_fps", "Frames per second published (smoothed).", labels=["stream"])
        dropped = CounterMetricFamily(
            "wscnet_dropped_frames",
            "Live frames dropped before inference (newer ones replaced them).",
            labels=["stream"],
        )
        encodes = CounterMetricFamily(
            "wscnet_jpeg_encodes", "Frames encoded as JPEG (at most once each, only while watched).", labels=["stream"]
        )
        online = GaugeMetricFamily(
            "wscnet_source_online", "1 while the stream's source delivers, 0 while offline.", labels=["stream"]
        )
        events = CounterMetricFamily("wscnet_events", "Events per stream and type.", labels=["stream", "event"])
        for name, hub in self.server.hubs.items():
            stats = hub.stats()
            frames.add_metric([name], stats["frames"])
            fps.add_metric([name], stats["fps"])
            dropped.add_metric([name], stats["dropped"])
            encodes.add_metric([name], stats["jpeg_encodes"])
            online.add_metric([name], 1.0 if stats["online"] else 0.0)
            for kind, count in stats["events"].items():
                events.add_metric([name, kind], count)
        yield from (frames, fps, dropped, encodes, online, events)

    def _viewer_families(self):
        clients = GaugeMetricFamily("wscnet_clients", "Viewers connected now.", labels=["stream", "kind"])
        rejected = CounterMetricFamily(
            "wscnet_clients_rejected", "Viewers turned away with 503 (--max-clients).", labels=["stream", "kind"]
        )
        for name, feed in self.server.feeds().items():
            for kind in ("video", "events"):
                clients.add_metric([name, kind], feed.clients[kind])
                rejected.add_metric([name, kind], feed.rejected[kind])
        yield from (clients, rejected)
