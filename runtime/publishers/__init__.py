"""Publishers: sinks that tell other programs about a stream's events (MQTT, webhooks), each from a
worker thread behind a bounded queue, so that nothing they wait for slows inference."""

from .base import QueuedPublisher, backoff_delays
from .mqtt import MqttPublisher, MqttSettings, parse_broker
from .webhook import WebhookPublisher, WebhookSettings, signature

__all__ = [
    "MqttPublisher",
    "MqttSettings",
    "QueuedPublisher",
    "WebhookPublisher",
    "WebhookSettings",
    "backoff_delays",
    "parse_broker",
    "signature",
]
