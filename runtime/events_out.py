"""The event outputs of a run, built from its settings and attached to a pipeline as sinks: the
``label_changed`` / ``summary`` makers (``sinks.labels``), MQTT and webhook publishers
(``publishers``) and the clip recorder (``sinks.clips``).

``label_changed`` is on when asked for (``--label-events``) and, by default, whenever something
consumes events (MQTT, webhooks, clips); a plain ``--jsonl`` run keeps frames plus source and model
events only, as before.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import RuntimeUserError
from .publishers import MqttPublisher, MqttSettings, WebhookPublisher, WebhookSettings, parse_broker
from .publishers.webhook import check_url
from .sinks.clips import ClipRecorder, ClipSettings
from .sinks.disk import parse_size
from .sinks.labels import FrameEvents, LabelChangeDetector, SummaryWindow

ALL_LABELS = "all"


@dataclass(frozen=True)
class EventOptions:
    label_events: bool | None = None  # None: on when MQTT, webhooks or clips are on
    hold_s: float = 1.0
    min_score: float = 0.5
    every_s: float | None = None  # a summary event this often (stream time); None: none
    mqtt: MqttSettings | None = None
    webhooks: WebhookSettings | None = None
    clips: ClipSettings | None = None

    @property
    def labels_on(self) -> bool:
        consumers = self.mqtt is not None or self.webhooks is not None or self.clips is not None
        return consumers if self.label_events is None else self.label_events


def event_options(values: dict) -> EventOptions:
    """``runtime.config`` values (flags or TOML) → EventOptions; one error line for a bad value."""
    return EventOptions(
        label_events=values["label_events"],
        hold_s=values["event_hold"],
        min_score=values["event_min_score"],
        every_s=values["event_every"],
        mqtt=_mqtt(values),
        webhooks=_webhooks(values),
        clips=_clips(values),
    )


def _mqtt(values: dict) -> MqttSettings | None:
    if values["mqtt"] is None:
        return None
    host, port, tls = parse_broker(values["mqtt"], values["mqtt_tls"])
    password = values["mqtt_password"] or os.environ.get("WSCNET_MQTT_PASSWORD")
    prefix = values["mqtt_prefix"].strip("/")
    if not prefix or any(c in prefix for c in "+#"):
        raise RuntimeUserError(f"--mqtt-prefix {values['mqtt_prefix']!r}: a topic prefix without + or #")
    return MqttSettings(
        host, port, prefix, values["mqtt_username"], password, tls, values["mqtt_ca"], values["mqtt_queue"]
    )


def _webhooks(values: dict) -> WebhookSettings | None:
    if not values["webhook"]:
        return None
    secret = values["webhook_secret"] or os.environ.get("WSCNET_WEBHOOK_SECRET")
    return WebhookSettings(
        tuple(check_url(u) for u in values["webhook"]),
        secret,
        values["webhook_timeout"],
        values["webhook_retries"],
        values["webhook_queue"],
    )


def _clips(values: dict) -> ClipSettings | None:
    if not values["clip_on"]:
        return None
    names = [n.strip() for n in values["clip_on"].split(",") if n.strip()]
    labels = None if names == [ALL_LABELS] else tuple(names)
    if not names:
        raise RuntimeUserError("--clip-on: name the labels to clip (e.g. joy,fear) or all")
    return ClipSettings(
        Path(values["clip_dir"]), labels, values["clip_pre"], values["clip_post"], parse_size(values["clip_memory"])
    )


def attach_event_outputs(pipeline, options: EventOptions, budget=None) -> list:
    """Build and attach the event sinks ``options`` ask for; the sinks (the pipeline closes them)."""
    classes = list(pipeline.model.metadata.class_names)
    _check_clip_labels(options.clips, classes)
    made: list = []
    try:
        for stream in pipeline.streams:
            made.extend(_stream_sinks(pipeline, stream, options, classes, budget))
        for url in options.webhooks.urls if options.webhooks is not None else ():
            hook = WebhookPublisher(url, options.webhooks)  # one per URL, shared by every stream
            pipeline.add_sink(hook)
            made.append(hook)
    except BaseException:
        for sink in made:
            sink.close()
        raise
    return made


def _stream_sinks(pipeline, stream, options: EventOptions, classes: list[str], budget) -> list:
    detector = LabelChangeDetector(classes, options.hold_s, options.min_score) if options.labels_on else None
    summary = SummaryWindow(classes, options.every_s) if options.every_s else None
    sinks: list = []
    if detector is not None or summary is not None:
        sinks.append(FrameEvents(pipeline, stream, detector, summary))
    if options.clips is not None:
        source = stream.source
        sinks.append(ClipRecorder(options.clips, stream.name, lambda: source.fps, budget))
    if options.mqtt is not None:
        sinks.append(MqttPublisher(options.mqtt, stream.name))
    stream.sinks.extend(sinks)
    return sinks


def _check_clip_labels(clips: ClipSettings | None, classes: list[str]) -> None:
    unknown = [label for label in (clips.labels or ()) if label not in classes] if clips else []
    if unknown:
        raise RuntimeUserError(
            f"--clip-on: {', '.join(unknown)} not a class of the model; classes: {', '.join(classes)} (or all)"
        )
