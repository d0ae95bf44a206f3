"""The inference scheduler on hand-made frame sequences with a fake clock (frame times passed in)."""

import numpy as np
import pytest

from runtime.scheduling import InferenceScheduler, fair_shares, thumbnail


def run(scheduler, streams: dict[str, float], seconds: float, thumbnails=None) -> dict[str, list[int]]:
    """Feed every stream's frames (``streams``: name → fps) in time order; the inferred frame numbers."""
    events = sorted((i / fps, name, i) for name, fps in streams.items() for i in range(round(seconds * fps)))
    inferred: dict[str, list[int]] = {name: [] for name in streams}
    for t, name, i in events:
        thumb = None if thumbnails is None else thumbnails(name, i)
        if scheduler.decide(name, t, thumb):
            inferred[name].append(i)
    return inferred


def test_fair_shares_give_small_asks_in_full_and_split_the_rest():
    assert fair_shares({"a": 30.0, "b": 30.0, "c": 5.0}, 45.0) == {"a": 20.0, "b": 20.0, "c": 5.0}
    assert fair_shares({"a": 30.0, "b": 30.0}, 40.0) == {"a": 20.0, "b": 20.0}
    assert fair_shares({"a": 10.0, "b": 10.0}, 40.0) == {"a": None, "b": None}  # fits: nobody limited
    assert fair_shares({"a": 10.0, "b": None}, 5.0) == {"a": 5.0, "b": None}  # b's rate not known yet
    assert fair_shares({"a": 30.0}, None) == {"a": None}  # capacity not measured yet


def test_every_frame_by_default_while_the_box_keeps_up():
    scheduler = InferenceScheduler()
    scheduler.observe(0.005, 1)  # 200 fps of capacity, 30 asked
    assert run(scheduler, {"a": 30.0}, 1.0)["a"] == list(range(30))


@pytest.mark.parametrize("options", [{"infer_every": 3}, {"infer_fps": 10.0}])
def test_a_stream_asking_for_every_third_frame_gets_exactly_those(options):
    scheduler = InferenceScheduler()
    scheduler.add_stream("a", **options)
    assert run(scheduler, {"a": 30.0}, 1.0)["a"] == list(range(0, 30, 3))


def test_an_overloaded_box_shares_its_capacity_equally():
    scheduler = InferenceScheduler(budget=1.0)
    scheduler.observe(1 / 60, 1)  # 60 inferences per second for 4 × 30 fps asked
    inferred = run(scheduler, {name: 30.0 for name in "abcd"}, 4.0)
    # 15 fps each: every other frame once the frame rates are measured (the first few frames earlier)
    for frames in inferred.values():
        assert 60 <= len(frames) <= 62
        assert max(np.diff(frames[4:])) == 2  # never starved: no gap longer than the share allows
    assert sum(map(len, inferred.values())) <= 60 * 4 + 4 * 3


def test_a_modest_stream_keeps_its_rate_and_the_rest_split_what_is_left():
    scheduler = InferenceScheduler(budget=1.0)
    scheduler.add_stream("slow", infer_fps=5.0)
    scheduler.observe(1 / 50, 1)  # 50 fps: slow takes 5, the three others 15 each
    inferred = run(scheduler, {"slow": 30.0, "a": 30.0, "b": 30.0, "c": 30.0}, 6.0)
    assert len(inferred["slow"]) == 30
    for name in "abc":
        assert 90 <= len(inferred[name]) <= 92


def test_a_stream_with_fewer_frames_is_not_starved_by_busier_ones():
    scheduler = InferenceScheduler(budget=1.0)
    scheduler.observe(1 / 30, 1)  # 30 fps of capacity; asks: 30 + 30 + 10
    inferred = run(scheduler, {"a": 30.0, "b": 30.0, "slow": 10.0}, 6.0)
    assert len(inferred["slow"]) == 60  # asks 10, under an equal share: all its frames
    for name in "ab":
        assert 60 <= len(inferred[name]) <= 62  # (30 - 10) / 2 = 10 fps each


def test_capacity_follows_the_observed_inference_times():
    scheduler = InferenceScheduler(budget=0.5)
    scheduler.observe(0.010, 2)
    assert scheduler.capacity_fps == pytest.approx(200.0)
    for _ in range(60):
        scheduler.observe(0.040, 1)  # the box got slower: the estimate converges to 25 fps
    assert scheduler.capacity_fps == pytest.approx(25.0, rel=1e-3)
    run(scheduler, {"a": 30.0, "b": 30.0}, 0.5)
    assert scheduler.stats()["a"]["allotted_fps"] == pytest.approx(6.25, rel=1e-2)  # 0.5 × 25 / 2


def grey(level: int) -> np.ndarray:
    return np.full((18, 32), level, np.uint8)


def test_a_scene_change_is_inferred_early_and_borrows_the_next_regular_inference():
    scheduler = InferenceScheduler(change_threshold=10.0)
    scheduler.add_stream("a", infer_every=10)
    # a still scene, a cut at frame 4 (grey 0 → 100), a small flicker (+5) at frame 30
    inferred = run(scheduler, {"a": 30.0}, 2.0, lambda _, i: grey(0 if i < 4 else 105 if i == 30 else 100))
    # frame 4 has credit 0.4 >= 0: inferred, credit -0.6; the next regular one needs 16 more frames
    assert inferred["a"] == [0, 4, 20, 30, 40, 50]
    assert scheduler.stats()["a"]["triggered"] == 1


def test_the_trigger_never_runs_a_stream_past_its_rate():
    scheduler = InferenceScheduler(change_threshold=10.0)
    scheduler.add_stream("a", infer_every=10)
    inferred = run(scheduler, {"a": 30.0}, 10.0, lambda _, i: grey(0 if i % 2 else 200))  # changes every frame
    # each trigger needs credit >= 0 and costs 1: the second frame may borrow one inference, after
    # that each one is paid for (9+ frames apart) and the total stays at one per 10 frames
    assert inferred["a"][:2] == [0, 1]
    assert min(np.diff(inferred["a"][1:])) >= 9
    assert len(inferred["a"]) <= 1 + 300 // 10


def test_thumbnail_sees_a_scene_change_but_not_noise():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    noisy = np.clip(scene.astype(np.int16) + rng.integers(-3, 4, scene.shape), 0, 255).astype(np.uint8)
    other = np.roll(scene, 200, axis=1) // 2
    base = thumbnail(scene)
    assert base.shape == (18, 32) and base.dtype == np.uint8
    assert np.mean(np.abs(base.astype(int) - thumbnail(noisy))) < 2
    assert np.mean(np.abs(base.astype(int) - thumbnail(other))) > 20


def test_bad_settings_are_refused():
    scheduler = InferenceScheduler()
    with pytest.raises(ValueError, match="not both"):
        scheduler.add_stream("a", infer_every=2, infer_fps=5.0)
    with pytest.raises(ValueError, match="infer_every"):
        scheduler.add_stream("a", infer_every=0)
    with pytest.raises(ValueError, match="budget"):
        InferenceScheduler(budget=0.0)


@pytest.mark.parametrize("spread", [True, False])
def test_streams_that_start_together_take_turns_instead_of_falling_due_together(spread):
    scheduler = InferenceScheduler(initial_cost_s=1 / 30)  # 0.8 × 30 fps for 4 streams: 6 fps, every 5th frame
    for name in "abcd":
        scheduler.add_stream(name)
    scheduler._spread = not spread  # as if already spread: the streams keep the turns they start with
    inferred = run(scheduler, {name: 30.0 for name in "abcd"}, seconds=2.0)
    due_together = np.bincount([i for frames in inferred.values() for i in frames], minlength=60)
    assert due_together[0] == 4  # every stream's first frame
    assert all(11 <= len(frames) <= 13 for frames in inferred.values())  # 6 of 30 fps over 2 s, plus the first
    assert (due_together[1:].max() == 1) if spread else (due_together[1:].max() >= 2)
