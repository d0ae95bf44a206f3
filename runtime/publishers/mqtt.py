"""Events to an MQTT broker (paho-mqtt, the ``mqtt`` extra): one connection per stream.

Topics: ``<prefix>/<stream>/event`` gets every event as JSON (QoS 1, in order); ``<prefix>/<stream>/state``
holds a retained ``online`` while the run is connected and ``offline`` once it ends, its source goes
offline, or the process dies (the broker publishes the connection's last will). paho reconnects with
a backoff (1 s doubling to 30 s); events wait in the publisher's bounded queue meanwhile, and what
does not fit is dropped and counted.
"""

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RuntimeUserError, log
from ..events import SOURCE_OFFLINE, SOURCE_ONLINE, Event
from .base import DEFAULT_QUEUE, QueuedPublisher

QOS = 1
ONLINE, OFFLINE = "online", "offline"
DEFAULT_PORT, TLS_PORT = 1883, 8883
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
CONNECT_POLL_S = 0.1


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = DEFAULT_PORT
    prefix: str = "wscnet"
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    queue: int = DEFAULT_QUEUE


def parse_broker(text: str, tls: bool = False) -> tuple[str, int, bool]:
    """``HOST[:PORT]``, ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT`` → (host, port, tls); the port
    defaults to 1883, or 8883 with TLS."""
    raw = text.strip() if "://" in text else "mqtt://" + text.strip()
    parts = urlsplit(raw)
    tls = tls or parts.scheme == "mqtts"
    try:
        port = parts.port or (TLS_PORT if tls else DEFAULT_PORT)
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port <= 0 or parts.path not in ("", "/"):
        raise RuntimeUserError(f"--mqtt {text!r}: expected HOST[:PORT] (or mqtts://HOST:PORT), e.g. 127.0.0.1:1883")
    return parts.hostname, port, tls


def client_module():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise RuntimeUserError("--mqtt needs paho-mqtt: pip install 'wscnet-edge[mqtt]'") from None
    return mqtt


class MqttPublisher(QueuedPublisher):
    name = "mqtt"

    def __init__(self, settings: MqttSettings, stream: str) -> None:
        mqtt = client_module()
        self.settings, self.stream = settings, stream
        self.event_topic = f"{settings.prefix}/{stream}/event"
        self.state_topic = f"{settings.prefix}/{stream}/state"
        self.connected = threading.Event()
        self._acked: set[int] = set()
        self._acks = threading.Condition()
        self._said_down = False
        self.client = self._client(mqtt)
        self.client.connect_async(settings.host, settings.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        super().__init__(settings.queue)

    def _client(self, mqtt):
        s = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"wscnet-{self.stream}-{os.getpid()}")
        client.will_set(self.state_topic, OFFLINE, qos=QOS, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls or s.ca_file is not None:
            client.tls_set(ca_certs=str(s.ca_file) if s.ca_file else None)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def describe(self) -> str:
        return f"mqtt {self.settings.host}:{self.settings.port} ({self.stream})"

    # ---- paho's network thread -----------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning(f"{self.describe()}: the broker refused the connection ({reason_code}); trying again")
            return
        client.publish(self.state_topic, ONLINE, qos=QOS, retain=True)
        self.connected.set()
        if self._said_down:
            self._said_down = False
            log.info(f"{self.describe()}: connected again")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self.closing.is_set() and not self._said_down:
            self._said_down = True
            log.warning(f"{self.describe()}: lost the broker ({reason_code}); reconnecting, events queue meanwhile")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acks:
            self._acked.add(mid)
            self._acks.notify_all()

    # ---- the worker ----------------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        while not self.connected.wait(CONNECT_POLL_S):
            if self.abandon.is_set():
                self.count("dropped")
                return
        if event.type in (SOURCE_OFFLINE, SOURCE_ONLINE):
            self.client.publish(
                self.state_topic, OFFLINE if event.type == SOURCE_OFFLINE else ONLINE, qos=QOS, retain=True
            )
        payload = json.dumps(event.to_dict(), separators=(",", ":"))
        info = self.client.publish(self.event_topic, payload, qos=QOS)
        self.count("sent" if self._acknowledged(info.mid) else "dropped")

    def _acknowledged(self, mid: int) -> bool:
        """Wait for the broker's PUBACK (paho sends the message again after a reconnect)."""
        with self._acks:
            while mid not in self._acked:
                if self.abandon.is_set():
                    return False
                self._acks.wait(CONNECT_POLL_S)
            self._acked.discard(mid)
        return True

    def finish(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.state_topic, OFFLINE, qos=QOS, retain=True)
            with self._acks:  # a clean end says so; the last will is for a process that died
                self._acks.wait_for(lambda: info.mid in self._acked, timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
