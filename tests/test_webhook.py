"""Events as webhooks to a real local HTTP receiver (aiohttp, on loopback, started by the test)."""

import hashlib
import hmac
import logging
import re

import pytest

pytest.importorskip("aiohttp", reason="the receiver is an aiohttp server (serve extra)")

from events_helpers import class_video, events_of, flicker_classes, run_with_events  # noqa: E402
from runtime_fixtures import exported_model  # noqa: E402
from serve_helpers import metrics, start_webcam, wait_for  # noqa: E402

from benchmarks.local_services import WebhookReceiver  # noqa: E402
from runtime.events_out import EventOptions  # noqa: E402
from runtime.publishers import WebhookSettings  # noqa: E402

SECRET = "shared-secret"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def reported(log_text: str, receiver: WebhookReceiver) -> tuple[int, int, int]:
    found = re.search(
        rf"webhook http://127\.0\.0\.1:{receiver.port}/hook: (\d+) event\(s\) sent, (\d+) dropped, "
        r"(\d+) failed",
        log_text,
    )
    assert found, log_text[-2000:]
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def test_every_event_is_delivered_in_order_and_signed(model, tmp_path):
    video = class_video(tmp_path / "hall.avi", flicker_classes())
    with WebhookReceiver() as receiver, WebhookReceiver() as second:
        hooks = WebhookSettings((receiver.url, second.url), secret=SECRET)
        _, (records,) = run_with_events(
            model, [video], tmp_path, EventOptions(hold_s=0.5, min_score=0.3, every_s=1.0, webhooks=hooks)
        )
    written = events_of(records)
    assert len(written) >= 4
    for got in (receiver, second):
        assert [body for _, body, _ in got.received] == written
    for headers, body, raw in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Wscnet-Signature"] == expected  # what a receiver recomputes with the secret
        assert headers["X-Wscnet-Event"] == body["event"] and headers["Content-Type"] == "application/json"
    forged = hmac.new(b"another secret", receiver.received[0][2], hashlib.sha256).hexdigest()
    assert receiver.received[0][0]["X-Wscnet-Signature"] != "sha256=" + forged


def test_a_failing_receiver_is_retried_then_the_event_counted_as_failed(model, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    video = class_video(tmp_path / "hall.avi", flicker_classes(steady=15, flicker=0))  # two label changes
    with WebhookReceiver("fail") as receiver:
        hooks = WebhookSettings((receiver.url,), retries=2, timeout_s=2.0)
        _, (records,) = run_with_events(
            model, [video], tmp_path, EventOptions(hold_s=0.5, min_score=0.3, webhooks=hooks)
        )
        sent, dropped, failed = reported(caplog.text, receiver)
    events = len(events_of(records))
    assert events == 2
    assert receiver.attempts == 3 * events  # the first try and two retries each
    assert (sent, dropped, failed) == (0, 0, events)


def test_a_receiver_that_hangs_costs_drops_not_frames(model, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    video = class_video(tmp_path / "hall.avi", [1] * 60)
    with WebhookReceiver("hang") as receiver:
        hooks = WebhookSettings((receiver.url,), retries=0, timeout_s=0.5, queue=2)
        stats, (records,) = run_with_events(model, [video], tmp_path, EventOptions(every_s=0.1, webhooks=hooks))
        sent, dropped, failed = reported(caplog.text, receiver)
    assert stats[0].frames_out == 60 and len([r for r in records if "event" not in r]) == 60
    events = len(events_of(records))
    assert sent == 0 and failed >= 1 and dropped >= 1
    assert failed + dropped == events  # every event accounted for: timed out, or never queued


def test_metrics_export_the_webhook_counters(model, tmp_path):
    video = class_video(tmp_path / "lobby.avi", [1] * 300)  # 20 s at --realtime
    with WebhookReceiver() as receiver:
        proc, url = start_webcam(
            model, video, tmp_path, "t", "--realtime", "--event-every", "0.5", "--webhook", receiver.url
        )
        try:
            key = 'wscnet_output_events_total{output="webhook",stream="lobby",what="sent"}'
            figures = wait_for(
                lambda: (m := metrics(url, {"Authorization": "Bearer t"})).get(key, 0) >= 2 and m, timeout=60
            )
            assert len(receiver.received) >= figures[key]
            assert figures['wscnet_output_events_total{output="frame_events",stream="lobby",what="summary"}'] >= 2
            assert figures['wscnet_events_total{event="summary",stream="lobby"}'] >= 2
        finally:
            proc.kill()
