"""Clips with pre-roll: the frames around a label change, checked against the JSONL and the saved video."""

import json
import logging

import numpy as np
import pytest
from events_helpers import class_video, events_of, flicker_classes, frames_of, run_with_events
from runtime_fixtures import FRAME_H, FRAME_W, exported_model, read_all

from runtime.events import LABEL_CHANGED
from runtime.events_out import EventOptions
from runtime.sinks.clips import SLACK_FRAMES, ClipSettings
from runtime.videoio import playable

PRE_S, POST_S = 1.0, 0.5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def clip_run(model, tmp_path, clips: ClipSettings, **options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    video = class_video(tmp_path / "porch.avi", flicker_classes(steady=40, flicker=0))  # class 1, then class 3
    _, (records,) = run_with_events(
        model, [video], tmp_path, EventOptions(hold_s=0.5, min_score=0.3, clips=clips), **options
    )
    return records, sorted(clips.folder.glob("*.json"))


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def test_a_clip_holds_the_seconds_before_and_after_the_change(model, tmp_path):
    clips = ClipSettings(tmp_path / "clips", labels=("class_3",), pre_s=PRE_S, post_s=POST_S)
    records, sidecars = clip_run(model, tmp_path, clips, save=tmp_path / "all.mp4")
    frames = frames_of(records)
    changes = events_of(records, LABEL_CHANGED)
    assert [e["label"] for e in changes] == ["class_1", "class_3"] and len(sidecars) == 1  # class_1 not watched
    change = changes[1]
    sidecar = json.loads(sidecars[0].read_text())
    t = change["timestamp"]
    expected = [r["index"] for r in frames if t - PRE_S - 1e-6 <= r["timestamp"] <= t + POST_S + 1e-6]
    assert sidecar["frames_dropped"] == 0
    assert sidecar["frames"] == expected and expected[0] == change["index"] - 15  # 1 s at 15 fps before it
    assert sidecar["events"][0] == change and sidecar["label"] == "class_3" and sidecar["stream"] == "porch"
    clip = sidecars[0].with_suffix(".mp4")
    assert clip.name.startswith("porch-") and clip.name.endswith("-class_3.mp4") and playable(clip)
    assert not list(clips.folder.glob(".*"))  # no .part left behind
    pictures, saved = read_all(clip), read_all(tmp_path / "all.mp4")
    assert len(pictures) == len(expected) and pictures[0].shape == (FRAME_H, FRAME_W, 3)
    for picture, index in zip(pictures, expected):  # the overlaid frame of that index, not its neighbour's
        assert mean_difference(picture, saved[index]) < 0.5 * mean_difference(picture, saved[index + 1])


def test_the_clip_memory_caps_the_pre_roll(model, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="runtime")
    frame_bytes = FRAME_W * FRAME_H * 3
    clips = ClipSettings(
        tmp_path / "clips", labels=None, pre_s=PRE_S, post_s=0.0, memory=(2 * 5 + SLACK_FRAMES) * frame_bytes
    )  # room for a ring of 5 frames
    records, sidecars = clip_run(model, tmp_path, clips)
    changes = events_of(records, LABEL_CHANGED)
    assert len(sidecars) == 2 and "needs more than the clip memory; keeping 5 frames" in caplog.text
    for change, sidecar in zip(changes, sidecars):
        held = json.loads(sidecar.read_text())["frames"]
        assert held == list(range(change["index"] - 4, change["index"] + 1))


def test_clips_count_against_the_disk_budget(model, tmp_path):
    clips = ClipSettings(tmp_path / "clips", labels=None, pre_s=PRE_S, post_s=POST_S)
    clip_run(model, tmp_path / "free", ClipSettings(tmp_path / "free" / "clips", None, PRE_S, POST_S))
    sizes = sorted(p.stat().st_size for p in (tmp_path / "free" / "clips").glob("*.mp4"))
    assert len(sizes) == 2
    records, _ = clip_run(model, tmp_path, clips, max_disk=int(sizes[-1] * 1.2))  # room for one clip
    kept = sorted(clips.folder.glob("*.mp4"))
    assert len(kept) == 1 and kept[0].name.endswith("-class_3.mp4")  # the oldest went first
    assert sorted(clips.folder.glob("*.json")) == [kept[0].with_suffix(".json")]  # with its sidecar
