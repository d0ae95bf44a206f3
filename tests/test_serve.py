"""The live server (runtime/serve) against real running servers: aiohttp on a real socket, read by
raw-socket and http.client clients. Frames come from a publisher thread (in-process tests) or from
``cli.py webcam --serve`` running a real exported model on a real video (subprocess tests)."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed")

from serve_helpers import (  # noqa: E402
    CLASSES,
    ROOT,
    Publisher,
    StreamReader,
    decode,
    frame_value,
    get,
    make_frame,
    make_record,
    metrics,
    open_stream,
    post_json,
    start_webcam,
    wait_for,
)

from runtime.errors import RuntimeUserError  # noqa: E402
from runtime.serve import LiveServer, parse_address  # noqa: E402
from runtime.serve.app import STREAM_SNDBUF  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROTECTED = ("", "info", "controls", "stream.mjpg", "snapshot.jpg", "events", "metrics")
JSONL_KEYS = {"index", "timestamp", "label", "probabilities", "inference_ms", "end_to_end_ms"}


@pytest.fixture
def server():
    live = LiveServer(port=0, token=TOKEN, max_clients=20, model_info={"class_names": list(CLASSES)}).start()
    yield live
    live.stop()


def grey(jpeg: bytes) -> float:
    return float(decode(jpeg).mean())


def read_parts(url: str, n: int, headers=AUTH) -> list[tuple[dict, bytes]]:
    sock = open_stream(url, headers)
    try:
        reader = StreamReader(sock)
        assert reader.status == 200
        return [reader.part() for _ in range(n)]
    finally:
        sock.close()


# ---- every route ---------------------------------------------------------------------------------
def test_page_is_self_contained_and_offline(server):
    status, headers, body = get(server.url, AUTH)
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for element in (
        'id="video"',
        'id="bars"',
        'id="timeline"',
        'id="opacity"',
        'id="smoothing"',
        'id="map"',
        'id="model"',
        'id="fps"',
        'id="e2e"',
        'id="dropped"',
    ):
        assert element in page
    assert "/*SCRIPT*/" not in page and "EventSource" in page  # the script is inlined
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything from outside"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"


def test_mjpeg_parts_are_the_newest_frames_each_encoded_once(server):
    with Publisher(server) as pub:
        wait_for(lambda: pub.published > 3)
        parts = read_parts(server.url + "stream.mjpg", 6)
    seqs = [int(h["x-frame-seq"]) for h, _ in parts]
    assert seqs == sorted(set(seqs)), "each part is a newer frame than the one before"
    for headers, jpeg in parts:
        assert headers["content-type"] == "image/jpeg"
        assert abs(grey(jpeg) - frame_value(int(headers["x-frame-index"]))) < 2  # the frame it claims to be
    m = metrics(server.url, AUTH)
    assert m['wscnet_jpeg_encodes_total{stream="0"}'] <= m['wscnet_frames_total{stream="0"}']


def test_snapshot_is_the_newest_frame(server):
    status, _, _ = get(server.url + "snapshot.jpg", AUTH)
    assert status == 503  # nothing published yet
    for i in range(5):
        server.publish(make_frame(i), make_record(i))
    status, headers, jpeg = get(server.url + "snapshot.jpg", AUTH)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert headers["x-frame-index"] == "4" and abs(grey(jpeg) - frame_value(4)) < 2


def test_events_carry_one_jsonl_record_per_frame_and_stats(server):
    sock = open_stream(server.url + "events", AUTH)
    try:
        reader = StreamReader(sock)
        assert reader.status == 200 and reader.headers["content-type"].startswith("text/event-stream")
        name, stats = reader.event()  # the figures come first, then every second
        assert name == "stats" and stats["clients"] == {"video": 0, "events": 1}
        for i in range(4):
            server.publish(make_frame(i), make_record(i))
            time.sleep(0.05)
        records = []
        while len(records) < 3:
            name, payload = reader.event()
            if name == "message":
                records.append(payload)
    finally:
        sock.close()
    assert all(set(r) == JSONL_KEYS for r in records)
    indices = [r["index"] for r in records]
    assert indices == sorted(set(indices))
    assert records[-1] == make_record(indices[-1])


def test_healthz_and_metrics(server):
    status, _, body = get(server.url + "healthz")  # no token needed
    assert status == 200 and b'"ok"' in body
    for i in range(7):
        record = make_record(i)
        record["inference_ms"] = 3.0 if i < 5 else 30.0
        server.publish(make_frame(i), record, dropped=2)
    status, headers, _ = get(server.url + "metrics", AUTH)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    m = metrics(server.url, AUTH)
    s = 'stream="0"'
    assert m[f"wscnet_frames_total{{{s}}}"] == 7
    assert m[f"wscnet_dropped_frames_total{{{s}}}"] == 2
    assert m[f'wscnet_inference_seconds_bucket{{{s},le="0.0025"}}'] == 0
    assert m[f'wscnet_inference_seconds_bucket{{{s},le="0.005"}}'] == 5  # the five 3 ms frames
    assert m[f'wscnet_inference_seconds_bucket{{{s},le="0.05"}}'] == 7
    assert m[f'wscnet_inference_seconds_bucket{{{s},le="+Inf"}}'] == m[f"wscnet_inference_seconds_count{{{s}}}"] == 7
    assert m[f"wscnet_inference_seconds_sum{{{s}}}"] == pytest.approx(5 * 0.003 + 2 * 0.03)
    assert m[f'wscnet_clients{{{s},kind="video"}}'] == 0
    assert m[f"wscnet_jpeg_encodes_total{{{s}}}"] == 0  # nobody watched: nothing was encoded
    assert m["wscnet_max_clients"] == 20


def test_unknown_routes_and_streams_are_not_served(server):
    assert get(server.url + "etc/passwd", AUTH)[0] == 404
    assert get(server.url + "page/app.js", AUTH)[0] == 404
    assert get(server.url + "snapshot.jpg?stream=7", AUTH)[0] == 404


def test_controls_change_without_restart(server):
    assert server.controls.current().map is True
    status, body = post_json(server.url + "controls", {"opacity": 0.2, "map": False}, headers=AUTH)
    assert status == 200
    settings = server.controls.current()
    assert (settings.opacity, settings.map) == (0.2, False)
    assert get(server.url + "controls", AUTH)[2] == b'{"opacity": 0.2, "smoothing": 0.0, "map": false}'
    assert post_json(server.url + "controls", {"opacity": 1.5}, headers=AUTH)[0] == 400
    assert post_json(server.url + "controls", {"brightness": 1}, headers=AUTH)[0] == 400
    assert post_json(server.url + "controls", "not json", headers=AUTH)[0] == 400
    assert post_json(server.url + "controls", "opacity=1", "application/x-www-form-urlencoded", AUTH)[0] == 415
    assert server.controls.current().opacity == 0.2  # refused changes left it alone


# ---- load: many viewers, a slow one, vanishing ones ----------------------------------------------
def test_twenty_concurrent_viewers_share_one_encoding_per_frame(server):
    received: list[list[int]] = [[] for _ in range(20)]
    errors = []

    def watch(k: int) -> None:
        try:
            received[k] = [int(h["x-frame-seq"]) for h, _ in read_parts(server.url + "stream.mjpg", 8)]
        except Exception as exc:  # reported below
            errors.append(exc)

    with Publisher(server, period=0.02) as pub:
        wait_for(lambda: pub.published > 2)
        before = metrics(server.url, AUTH)
        viewers = [threading.Thread(target=watch, args=(k,)) for k in range(20)]
        for v in viewers:
            v.start()
        wait_for(lambda: metrics(server.url, AUTH)['wscnet_clients{stream="0",kind="video"}'] == 20 or errors)
        assert get(server.url + "stream.mjpg", AUTH)[0] == 503  # the 21st
        for v in viewers:
            v.join(30)
        after = metrics(server.url, AUTH)
    assert not errors and all(len(r) == 8 for r in received)
    encodes = after['wscnet_jpeg_encodes_total{stream="0"}'] - before['wscnet_jpeg_encodes_total{stream="0"}']
    frames = after['wscnet_frames_total{stream="0"}'] - before['wscnet_frames_total{stream="0"}']
    assert 0 < encodes <= frames + 1  # once per frame at most, however many watch
    assert sum(len(r) for r in received) >= 4 * encodes  # the same bytes went to many viewers
    assert after['wscnet_clients_rejected_total{stream="0",kind="video"}'] == 1


def test_a_viewer_that_stops_reading_holds_up_nobody(server):
    """A viewer that reads a byte now and then while 60 frames go by: the other viewer gets them,
    the server queues nothing for the stalled one, and once it reads again it gets the newest."""
    with Publisher(server, period=0.02, size=(480, 640)) as pub:  # noisy VGA: frames of ~200 KB
        wait_for(lambda: pub.published > 2)
        slow = open_stream(server.url + "stream.mjpg", AUTH, rcvbuf=2048)
        fast = StreamReader(open_stream(server.url + "stream.mjpg", AUTH))
        try:
            slow_bytes, fast_seqs = slow.recv(1), [int(fast.part()[0]["x-frame-seq"])]
            while fast_seqs[-1] < fast_seqs[0] + 60:  # each part waits at most the socket timeout
                fast_seqs.append(int(fast.part()[0]["x-frame-seq"]))
                if len(fast_seqs) % 20 == 0:
                    slow_bytes += slow.recv(1)
            published_then = pub.published
            parts = _parts_until(slow, slow_bytes, published_then)  # the slow viewer reads at full speed
        finally:
            slow.close()
            fast.sock.close()
    assert fast_seqs == sorted(set(fast_seqs)) and len(fast_seqs) >= 3, "the fast viewer kept getting frames"
    seqs, sizes = parts[:, 0], parts[:, 1]
    assert seqs[0] <= fast_seqs[0], "the slow viewer stalled on a frame from before the others"
    caught_up = int(np.argmax(seqs >= published_then))
    assert caught_up >= 1 and seqs[caught_up - 1] < fast_seqs[-1], "it skipped the frames of the stall"
    # what reached it from before the stall is no more than the kernel's socket buffers held, plus
    # the one part the server was writing: the server itself queued nothing for it
    kernel_buffers = 2 * STREAM_SNDBUF + 2 * 2048  # Linux doubles what is set, both ends
    assert sizes[:caught_up].sum() <= kernel_buffers + 2 * sizes.max()


def _parts_until(sock: socket.socket, data: bytes, seq: int) -> np.ndarray:
    """(seq, JPEG bytes) of every part read until the headers of frame ``seq`` or a newer one arrive."""
    found = np.zeros((0, 2), dtype=np.int64)
    while not len(found) or found[-1, 0] < seq:
        data += sock.recv(1 << 20)  # the socket's timeout ends a stream that never gets there
        found = np.array(
            [(int(s), int(size)) for size, s in re.findall(rb"Content-Length: (\d+)\r\nX-Frame-Seq: (\d+)", data)],
            dtype=np.int64,
        )
        found = found.reshape(-1, 2)
    return found


def test_viewers_that_vanish_mid_stream_are_dropped_silently(server, capfd):
    with Publisher(server, period=0.01) as pub:
        wait_for(lambda: pub.published > 2)
        for route in ("stream.mjpg", "events", "stream.mjpg", "events"):
            sock = open_stream(server.url + route, AUTH)
            sock.recv(300)  # headers and part of a frame or event
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # reset, mid-stream
        for _ in range(3):
            sock = open_stream(server.url + "stream.mjpg", AUTH)
            sock.recv(100)
            sock.close()  # plain close, mid-stream
        wait_for(lambda: sum(v for k, v in metrics(server.url, AUTH).items() if k.startswith("wscnet_clients{")) == 0)
        assert len(read_parts(server.url + "stream.mjpg", 2)) == 2  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "rror" not in err


# ---- access ---------------------------------------------------------------------------------------
def test_wrong_or_missing_token_gets_401_and_no_frame(server):
    server.publish(make_frame(1), make_record(1))
    for route in PROTECTED:
        for headers, query in (
            ({}, ""),
            ({}, "?token=wrong"),
            ({"Authorization": "Bearer wrong"}, ""),
            ({"Authorization": f"Basic {TOKEN}"}, ""),
            ({}, f"?token={TOKEN}x"),
        ):
            status, _, body = get(server.url + route + query, headers)
            assert status == 401, (route, headers, query)
            assert b"\xff\xd8" not in body and b"probabilities" not in body
    for route in ("", "info", "controls", "snapshot.jpg", "metrics"):  # the right token, either way
        assert get(server.url + route + f"?token={TOKEN}")[0] == 200
        assert get(server.url + route, AUTH)[0] == 200
    assert get(server.url + "healthz")[0] == 200


def test_without_a_token_loopback_is_open_and_other_addresses_warn(capfd):
    with LiveServer(port=0) as open_server:
        assert get(open_server.url + "info")[0] == 200
    assert "warning" not in capfd.readouterr().err
    with LiveServer(host="0.0.0.0", port=0):
        pass
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "without --token" in warnings[0]
    with LiveServer(host="0.0.0.0", port=0, token=TOKEN):
        pass
    assert "warning" not in capfd.readouterr().err


def test_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeUserError, match=f"127.0.0.1:{port}: port already in use"):
            LiveServer(port=port).start()


def test_stop_ends_open_streams():
    live = LiveServer(port=0).start()
    live.publish(make_frame(0), make_record(0))
    reader = StreamReader(open_stream(live.url + "stream.mjpg"))
    reader.part()
    live.stop()
    with pytest.raises((EOFError, ConnectionError)):  # not the socket's timeout: stop() closed it
        while True:
            reader.part()
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", live.port), timeout=2)


def test_parse_address():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:8081") == ("::1", 8081)
    assert parse_address("localhost:80") == ("localhost", 80)
    for bad in ("", "http", "host:", "70000", "::1:80", "a:b:c"):
        with pytest.raises(RuntimeUserError, match="expected \\[HOST:\\]PORT"):
            parse_address(bad)


# ---- the real command: webcam --serve -------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from runtime_fixtures import exported_model

    return exported_model(tmp_path_factory)


def test_webcam_serve_then_ctrl_c_leaves_complete_files(model, tmp_path):
    from runtime_fixtures import read_all, read_jsonl, write_video

    video = write_video(tmp_path / "clip.avi", 240, fps=30.0)  # 8 s at --realtime
    proc, url = start_webcam(model, video, tmp_path, TOKEN, "--realtime")
    try:
        reader = StreamReader(open_stream(url + "events", AUTH))
        events = []
        while len(events) < 5:
            name, payload = reader.event()
            if name == "message":
                events.append(payload)
        reader.sock.close()
        parts = read_parts(url + "stream.mjpg", 2)
        status, _, jpeg = get(url + f"snapshot.jpg?token={TOKEN}")
        assert status == 200 and decode(jpeg).shape == (96, 128, 3)
        assert all(decode(p[1]).shape == (96, 128, 3) for p in parts)
        assert get(url + "metrics")[0] == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    log = "".join(proc.log)
    assert "interrupted" in log and "Traceback" not in log
    records = read_jsonl(tmp_path / "out.jsonl")
    assert 5 <= len(records) < 240  # stopped early, the file complete (every line parses)
    assert len(read_all(tmp_path / "out.mp4")) == len(records)
    by_index = {r["index"]: r for r in records}
    assert all(e == by_index[e["index"]] for e in events)  # /events carries exactly the JSONL records
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), timeout=2)


def test_webcam_serve_on_a_taken_port_exits_2(model, tmp_path):
    from runtime_fixtures import write_video

    video = write_video(tmp_path / "clip.avi", 3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [
            sys.executable,
            str(ROOT / "cli.py"),
            "webcam",
            "--model",
            str(model),
            "--source",
            str(video),
            "--no-display",
            "--serve",
            str(port),
            "--jsonl",
            str(tmp_path / "x.jsonl"),
        ]
        done = subprocess.run(
            cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1] == f"error: --serve 127.0.0.1:{port}: port already in use "
        "(another server, or an earlier run still holding it)"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_realtime_plays_a_file_at_its_own_frame_rate(model, tmp_path):
    """--realtime: 10 frames of a 10 fps file take at least 0.9 s (the 10th is due at 0.9 s)."""
    from runtime_fixtures import write_video

    from runtime.backends import open_backend
    from runtime.pipeline import Pipeline, PipelineOptions
    from runtime.serve.attach import LiveSink
    from runtime.sources import open_source

    video = write_video(tmp_path / "clip.avi", 10, fps=10.0)
    backend = open_backend(model, device="cpu", threads=1)
    try:
        live = LiveServer(port=0).start()
        try:
            pipeline = Pipeline(
                backend, open_source(str(video)), PipelineOptions(display=False, progress=False, realtime=True)
            )
            pipeline.streams[0].sinks.append(LiveSink(live, pipeline.streams[0], "0"))
            [stats] = pipeline.run()
        finally:
            live.stop()
    finally:
        backend.close()
    assert stats.frames_out == 10 and stats.wall_s >= 0.9
    assert live.hubs["0"].seq == 10  # every frame reached the server


def test_the_server_brings_no_torch_into_the_runtime():
    code = (
        "import sys, runtime.serve; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'wscnet', 'export')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_info_describes_the_model_running_now_after_a_swap():
    from runtime.events import MODEL_RELOADED, SOURCE_OFFLINE, Event
    from runtime.serve.attach import LiveSink

    server = LiveServer(port=0, model_info={"model": "first"})
    descriptions = iter([{"model": "second"}])
    sink = LiveSink(server, stream=None, hub="0", describe_model=lambda: next(descriptions))
    sink.event(Event(SOURCE_OFFLINE, "0"))
    assert server.model_info == {"model": "first"}  # only a swap asks again
    sink.event(Event(MODEL_RELOADED, "0"))
    assert server.model_info == {"model": "second"}
    assert server.hubs["0"].event_counts == {SOURCE_OFFLINE: 1, MODEL_RELOADED: 1}


def test_an_output_shared_by_several_streams_is_counted_once():
    from types import SimpleNamespace

    from runtime.serve.attach import SHARED_OUTPUTS, _output_counters
    from runtime.sinks import Sink

    class Counting(Sink):
        def __init__(self, name: str, sent: int) -> None:
            self.name, self.sent = name, sent

        def counters(self) -> dict:
            return {"sent": self.sent}

    hook = Counting("webhook", 5)
    streams = [SimpleNamespace(name="a", sinks=[Counting("jsonl", 1), hook])]
    assert _output_counters(SimpleNamespace(streams=streams)) == {"a": {"jsonl": {"sent": 1}, "webhook": {"sent": 5}}}
    streams.append(SimpleNamespace(name="b", sinks=[Counting("jsonl", 2), hook]))
    assert _output_counters(SimpleNamespace(streams=streams)) == {
        "a": {"jsonl": {"sent": 1}},
        SHARED_OUTPUTS: {"webhook": {"sent": 5}},
        "b": {"jsonl": {"sent": 2}},
    }
