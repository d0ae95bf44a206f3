"""Events made from the frames: label_changed with hysteresis, periodic summaries, and their settings."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from events_helpers import class_video, events_of, flicker_classes, frames_of, run_with_events
from runtime_fixtures import exported_model

from runtime import config
from runtime.events import LABEL_CHANGED, SUMMARY
from runtime.events_out import EventOptions, event_options
from runtime.sinks.labels import LabelChangeDetector, SummaryWindow

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("calm", "joy", "fear")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def one_hot(label: str, score: float = 0.9) -> np.ndarray:
    rest = (1.0 - score) / (len(CLASSES) - 1)
    return np.array([score if name == label else rest for name in CLASSES])


def feed_all(detector, labels: list[str], fps: float = 10.0, scores=None) -> list[dict]:
    found = []
    for i, label in enumerate(labels):
        change = detector.feed(i / fps, one_hot(label, scores[i] if scores else 0.9), i)
        if change:
            found.append(change)
    return found


def test_a_label_counts_once_held_for_the_hold_time():
    # 10 fps, hold 0.3 s: a label must win 4 frames in a row (t, t+0.1, t+0.2, t+0.3)
    labels = ["calm"] * 5 + ["joy", "calm", "joy", "calm"] + ["joy"] * 6
    found = feed_all(LabelChangeDetector(CLASSES, hold_s=0.3, min_score=0.5), labels)
    assert [(c["previous"], c["label"], c["index"], c["since_index"]) for c in found] == [
        (None, "calm", 3, 0),
        ("calm", "joy", 12, 9),
    ]
    assert found[1]["scores"]["joy"] == pytest.approx(0.9) and found[1]["held_s"] == pytest.approx(0.3)


def test_without_hysteresis_every_flicker_is_a_change():
    labels = ["calm", "joy", "calm", "joy", "joy", "fear"]
    found = feed_all(LabelChangeDetector(CLASSES, hold_s=0.0, min_score=0.0), labels)
    assert [c["label"] for c in found] == ["calm", "joy", "calm", "joy", "fear"]


def test_a_weak_frame_restarts_the_wait():
    labels = ["joy"] * 8
    scores = [0.9, 0.9, 0.9, 0.4, 0.9, 0.9, 0.9, 0.9]  # frame 3 below min_score
    found = feed_all(LabelChangeDetector(CLASSES, hold_s=0.3, min_score=0.5), labels, scores=scores)
    assert [(c["label"], c["index"], c["since_index"]) for c in found] == [("joy", 7, 4)]


def test_summary_every_period_of_stream_time():
    window = SummaryWindow(CLASSES, every_s=1.0)
    labels = ["calm"] * 6 + ["joy"] * 4 + ["fear"] * 10  # 10 fps
    found = [s for i, lab in enumerate(labels) if (s := window.feed(i / 10, one_hot(lab), i))]
    assert [(s["from_index"], s["to_index"], s["frames"]) for s in found] == [(0, 10, 11)]
    first = found[0]
    assert first["labels"] == {"calm": 6, "joy": 4, "fear": 1}
    assert first["label"] == "calm"
    assert first["scores"]["calm"] == pytest.approx((6 * 0.9 + 5 * 0.05) / 11, abs=1e-6)


def expected_changes(frames: list[dict], hold_s: float, min_score: float) -> list[tuple[str, int]]:
    """(label, index) of each change, found from the records by runs of one winning label."""
    changes, announced, run_label, run_start = [], None, None, None
    for r in frames:
        label = r["label"] if r["probabilities"][r["label"]] >= min_score else None
        if label != run_label:
            run_label, run_start = label, r["timestamp"]
        if label is not None and label != announced and r["timestamp"] - run_start >= hold_s - 1e-9:
            changes.append((label, r["index"]))
            announced, run_label = label, None
    return changes


def test_hysteresis_on_a_video_with_a_flickering_label(model, tmp_path):
    video = class_video(tmp_path / "flicker.avi", flicker_classes())  # 2 s A, 2 s A/B flicker, 2 s B at 15 fps
    runs = {}
    for name, hold, score in (("without", 0.0, 0.0), ("with", 0.5, 0.3)):
        out = tmp_path / name
        _, (records,) = run_with_events(
            model, [video], out, EventOptions(label_events=True, hold_s=hold, min_score=score)
        )
        runs[name] = (frames_of(records), events_of(records, LABEL_CHANGED))
    frames, without = runs["without"]
    flips = sum(a["label"] != b["label"] for a, b in zip(frames, frames[1:]))
    assert flips >= 20, "the video flickers: the model's top label changes on most flicker frames"
    assert len(without) == flips + 1  # every change of the top label, and the first label
    assert [(e["label"], e["index"]) for e in without] == expected_changes(frames, 0.0, 0.0)
    frames, held = runs["with"]
    assert [(e["label"], e["index"]) for e in held] == expected_changes(frames, 0.5, 0.3)
    assert [e["label"] for e in held] == ["class_1", "class_3"]  # no storm: the two steady labels only
    for e in held:
        assert e["stream"] == "flicker" and e["time"].endswith("Z") and len(e["model"]) == 64
        assert e["scores"] == frames[e["index"]]["probabilities"] and e["held_s"] >= 0.5


def test_events_are_off_in_a_plain_run_and_summaries_come_every_period(model, tmp_path):
    video = class_video(tmp_path / "steady.avi", [1] * 45)  # 3 s at 15 fps
    _, (plain,) = run_with_events(model, [video], tmp_path / "plain", EventOptions())
    assert events_of(plain) == []
    _, (records,) = run_with_events(model, [video], tmp_path / "summaries", EventOptions(every_s=1.0))
    summaries = events_of(records, SUMMARY)
    frames = frames_of(records)
    assert [(s["from_index"], s["to_index"]) for s in summaries] == [(0, 15), (16, 30)]
    for s in summaries:
        window = frames[s["from_index"] : s["to_index"] + 1]
        for name, mean in s["scores"].items():
            assert mean == pytest.approx(np.mean([r["probabilities"][name] for r in window]), abs=1e-5)
    # events sit in the JSONL right after the frame they were made on
    positions = [i for i, r in enumerate(records) if "event" in r]
    assert [records[i - 1]["index"] for i in positions] == [s["to_index"] for s in summaries]


def test_event_settings_from_flags_and_toml_agree(tmp_path):
    toml = tmp_path / "edge.toml"
    toml.write_text(
        '[model]\nmodel = "m.onnx"\n[events]\nevent_hold = 2.0\nevent_every = 30.0\n'
        '[mqtt]\nmqtt = "127.0.0.1:1884"\nmqtt_prefix = "site/a"\n'
        '[webhooks]\nwebhook = ["http://127.0.0.1:9000/hook"]\nwebhook_secret = "s"\n'
        '[clips]\nclip_on = "joy,fear"\nclip_pre = 3.0\nclip_memory = "64MB"\n'
    )
    from_file = config.from_toml(toml)
    from_flags = config.from_flags(
        {
            "model": "m.onnx",
            "event_hold": 2.0,
            "event_every": 30.0,
            "mqtt": "127.0.0.1:1884",
            "mqtt_prefix": "site/a",
            "webhook": ["http://127.0.0.1:9000/hook"],
            "webhook_secret": "s",
            "clip_on": "joy,fear",
            "clip_pre": 3.0,
            "clip_memory": "64MB",
        }
    )
    assert from_file == from_flags
    options = event_options(from_file.values)
    assert (options.mqtt.host, options.mqtt.port, options.mqtt.prefix) == ("127.0.0.1", 1884, "site/a")
    assert options.clips.labels == ("joy", "fear") and options.clips.memory == 64_000_000
    assert options.webhooks.urls == ("http://127.0.0.1:9000/hook",) and options.labels_on


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mqtt", "127.0.0.1:notaport"], "error: --mqtt '127.0.0.1:notaport': expected HOST[:PORT]"),
        (["--webhook", "ftp://x/"], "error: --webhook 'ftp://x/': expected an http:// or https:// URL"),
        (["--clip-on", "joy"], "error: --clip-on: joy not a class of the model; classes: class_0"),
    ],
)
def test_bad_event_settings_are_one_line_and_exit_2(model, tmp_path, flags, message):
    video = class_video(tmp_path / "v.avi", [1] * 3)
    result = subprocess.run(
        [sys.executable, "cli.py", "webcam", "--model", str(model), "--source", str(video), "--no-display", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
