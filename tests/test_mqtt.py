"""Events to a real MQTT broker (Debian's mosquitto, started by the test on loopback)."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt (the mqtt extra) is not installed")

from events_helpers import class_video, events_of, flicker_classes, run_with_events  # noqa: E402
from runtime_fixtures import exported_model  # noqa: E402
from serve_helpers import wait_for  # noqa: E402

from benchmarks.local_services import MOSQUITTO, Mosquitto  # noqa: E402
from runtime.events import LABEL_CHANGED, SUMMARY  # noqa: E402
from runtime.events_out import EventOptions  # noqa: E402
from runtime.publishers import MqttSettings  # noqa: E402

if MOSQUITTO is None:
    pytest.skip(
        "the mosquitto broker is not installed (apt-get install mosquitto); .ci/run installs it",
        allow_module_level=True,
    )

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as running:
        yield running


class Subscriber:
    """A paho client of the test's own: what arrives on ``topic`` as (topic, text, retained)."""

    def __init__(self, port: int, topic: str, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=client_id is None
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), bool(m.retain)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def events(self) -> list[dict]:
        """Event payloads in arrival order, a QoS 1 duplicate (sent again after a reconnect) once."""
        seen, out = set(), []
        for topic, text, _ in self.messages:
            if topic.endswith("/event") and text not in seen:
                seen.add(text)
                out.append(json.loads(text))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings(port: int, queue: int = 1000) -> MqttSettings:
    return MqttSettings("127.0.0.1", port, prefix="test", queue=queue)


def test_events_of_a_known_video_arrive_in_order_with_the_right_labels(model, broker, tmp_path):
    video = class_video(tmp_path / "door.avi", flicker_classes())
    listener = Subscriber(broker.port, "test/#")
    try:
        _, (records,) = run_with_events(
            model, [video], tmp_path, EventOptions(hold_s=0.5, min_score=0.3, every_s=1.0, mqtt=settings(broker.port))
        )
        written = events_of(records)
        wait_for(lambda: len(listener.events()) >= len(written))
        states = [(t, text) for t, text, _ in listener.messages if t.endswith("/state")]
    finally:
        listener.close()
    assert [e["event"] for e in written].count(LABEL_CHANGED) == 2 and SUMMARY in [e["event"] for e in written]
    assert listener.events() == written  # the JSONL's events, in the same order, field for field
    assert [e["label"] for e in written if e["event"] == LABEL_CHANGED] == ["class_1", "class_3"]
    assert {t for t, _, _ in listener.messages} == {"test/door/event", "test/door/state"}
    assert states == [("test/door/state", "online"), ("test/door/state", "offline")]  # a clean end says offline


def test_retained_online_and_the_last_will_offline_after_kill_9(model, broker, tmp_path):
    video = class_video(tmp_path / "gate.avi", [1] * 600)  # 40 s at --realtime: killed long before
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(
        [
            sys.executable,
            "cli.py",
            "webcam",
            "--model",
            str(model),
            "--source",
            str(video),
            "--no-display",
            "--threads",
            "1",
            "--realtime",
            "--mqtt",
            f"127.0.0.1:{broker.port}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        late = wait_for(lambda: _retained_state(broker.port, "wscnet/gate/state") == "online", timeout=60)
        run.send_signal(signal.SIGKILL)  # no handler runs: only the broker's last will can tell
        run.wait(30)
        wait_for(lambda: _retained_state(broker.port, "wscnet/gate/state") == "offline", timeout=20)
    finally:
        run.kill()
    assert late and run.returncode == -signal.SIGKILL


def _retained_state(port: int, topic: str) -> str | None:
    """What a client that subscribes now is handed as the retained state (None if nothing yet)."""
    late = Subscriber(port, topic)
    try:
        time.sleep(0.3)
        retained = [text for _, text, kept in late.messages if kept]
        return retained[-1] if retained else None
    finally:
        late.close()


def test_the_broker_goes_down_and_comes_back_mid_run(model, broker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    video = class_video(tmp_path / "yard.avi", flicker_classes(steady=45, flicker=30))  # 8 s at --realtime
    listener = Subscriber(broker.port, "test/+/event", client_id="test-listener")  # a persistent session
    result: dict = {}

    def run_video() -> None:
        options = EventOptions(hold_s=0.5, min_score=0.3, every_s=0.25, mqtt=settings(broker.port, queue=4))
        result["stats"], result["records"] = run_with_events(model, [video], tmp_path, options, realtime=True)

    run = threading.Thread(target=run_video)
    run.start()
    try:
        wait_for(lambda: len(listener.events()) >= 3, timeout=30)
        broker.stop()
        time.sleep(2.5)  # 10 summaries at 4 per second: more than the queue of 4 holds
        broker.start()
        run.join(120)
        assert not run.is_alive()
        written = events_of(result["records"][0])
        sent, dropped = _reported(caplog.text)
        wait_for(lambda: len(listener.events()) >= sent, timeout=20)
    finally:
        listener.close()
    received = listener.events()
    frames = [r for r in result["records"][0] if "event" not in r]
    assert len(frames) == 120 and result["stats"][0].frames_out == 120  # every frame, nothing waited
    assert dropped > 0 and sent + dropped == len(written)
    assert len(received) == sent
    assert received == [e for e in written if e in received]  # in order; the rest are the dropped ones


def _reported(log_text: str) -> tuple[int, int]:
    found = re.search(r"mqtt 127\.0\.0\.1:\d+ \(yard\): (\d+) event\(s\) sent, (\d+) dropped", log_text)
    assert found, log_text[-2000:]
    return int(found.group(1)), int(found.group(2))


def test_events_reach_a_tls_broker_that_the_ca_file_vouches_for(model, tmp_path):
    with Mosquitto(tmp_path / "tls-broker", tls=True) as broker:
        listener = Subscriber(broker.port, "test/#")  # the test listens on the plain port
        tls = MqttSettings("127.0.0.1", broker.tls_port, prefix="test", tls=True, ca_file=broker.cert)
        try:
            video = class_video(tmp_path / "porch.avi", flicker_classes())
            _, (records,) = run_with_events(model, [video], tmp_path, EventOptions(hold_s=0.5, min_score=0.3, mqtt=tls))
            written = events_of(records)
            wait_for(lambda: len(listener.events()) >= len(written))
        finally:
            listener.close()
    assert written and listener.events() == written
    log = (tmp_path / "tls-broker" / "broker.log").read_text()
    assert re.search(r"New client connected from 127\.0\.0\.1:\d+ as wscnet-porch-\d+", log)
