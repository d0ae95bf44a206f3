"""Per-frame work outside inference, before and after each change, in one interleaved run.

Each row times two ways of doing one step on a 640×480 frame for a 224 px model and reports
their ratio (after / before), so load from other processes hits both alike:
- ``normalise``: RGB planes in two numpy calls over a 3×h×w view (kept) vs a loop over the three
  channels (before); same bits;
- ``two views``: squash + crop sharing the k×k block average of the frame vs shrinking each view
  from the frame (not kept: see docs/views.md);
- ``draw, same map``: the overlay of a frame drawn with the previous frame's prediction, colour
  image remembered (kept) vs coloured again;
- ``batch``: a reused input buffer vs a fresh one per frame (not kept: see docs/views.md).

    python cli.py benchmark frame-work [--rounds 60]
"""

import cv2
import numpy as np

from runtime.contract import InputContract
from runtime.framing import Framing
from runtime.metadata import ModelMetadata
from runtime.overlay import Overlay
from runtime.preprocess import Preprocessor, resize_picture

from .measure import time_interleaved

FRAME = (640, 480)
SIZE = 224
REPEATS = 10  # calls per timed block


def test_frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (FRAME[1], FRAME[0], 3), dtype=np.uint8), (5, 5), 0)


def per_channel(pre: Preprocessor, resized: np.ndarray, out: np.ndarray) -> None:
    """The normalisation before the change: a multiply and a subtract per channel."""
    for rgb in range(3):
        channel = out[0, rgb]
        np.multiply(resized[:, :, 2 - rgb], pre.scale[rgb], out=channel, casting="unsafe")
        np.subtract(channel, pre.offset[rgb], out=channel)


def shared_shrink(pre: Preprocessor, frame: np.ndarray, out: np.ndarray) -> None:
    """Squash and crop from one 2×2 block average of the frame (valid for 640×480: even offsets)."""
    half = cv2.resize(frame, (FRAME[0] // 2, FRAME[1] // 2), interpolation=cv2.INTER_AREA)
    side, left = FRAME[1] // 2, (FRAME[0] - FRAME[1]) // 4
    for row, picture in enumerate((half, half[:, left : left + side])):
        resized = cv2.resize(np.ascontiguousarray(picture), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        np.multiply(resized.transpose(2, 0, 1)[::-1], pre.scale[:, None, None], out=out[row], casting="unsafe")
        np.subtract(out[row], pre.offset[:, None, None], out=out[row])


def repeated(call):
    def block() -> None:
        for _ in range(REPEATS):
            call()

    return block


def measure(rounds: int) -> list[dict]:
    frame = test_frame()
    contract = InputContract(SIZE)
    metadata = ModelMetadata(tuple("abcdef"), SIZE, contract.mean, contract.std, contract=contract)
    two_views, one_view = Framing(metadata), Framing(metadata, resize="squash")
    squash = Preprocessor(contract.with_geometry("squash"))
    out, reused = squash.new_buffer(2), one_view.new_batch(1)
    resized = resize_picture(frame, SIZE, SIZE)
    geometry = one_view.to_tensor(frame, reused)
    probs, sentiment_map = np.full(6, 1 / 6, np.float32), np.random.default_rng(1).random((7, 7), np.float32)
    canvas = frame.copy()
    plain = Overlay(metadata.class_names, 0.45)
    pairs = {
        "normalise": (lambda: squash.normalise(resized, out[0]), lambda: per_channel(squash, resized, out)),
        "two views": (lambda: shared_shrink(squash, frame, out), lambda: two_views.to_tensor(frame, out)),
        "draw, same map": (
            lambda: one_view.draw(canvas, probs, sentiment_map, geometry),
            lambda: plain.draw(canvas, probs, sentiment_map, geometry),
        ),
        "batch": (lambda: one_view.to_tensor(frame, reused), lambda: one_view.to_tensor(frame, one_view.new_batch(1))),
    }
    rows = []
    for name, (after, before) in pairs.items():  # each pair on its own, in blocks: caches warm for both
        times = time_interleaved({"after": repeated(after), "before": repeated(before)}, warmup=2, rounds=rounds)
        after_ms, before_ms = (float(np.median(times[side])) / REPEATS for side in ("after", "before"))
        rows.append(
            {
                "step": name,
                "before_ms": round(before_ms, 4),
                "after_ms": round(after_ms, 4),
                "ratio": round(after_ms / before_ms, 3),
            }
        )
    return rows


def same_result() -> dict[str, bool]:
    """The kept changes compute what the code before them did."""
    frame, contract = test_frame(), InputContract(SIZE)
    pre = Preprocessor(contract.with_geometry("squash"))
    before, after = pre.new_buffer(), pre.new_buffer()
    per_channel(pre, resize_picture(frame, SIZE, SIZE), before)
    pre(frame, after)
    metadata = ModelMetadata(tuple("abcdef"), SIZE, contract.mean, contract.std, contract=contract)
    framing = Framing(metadata, resize="squash")
    geometry = framing.to_tensor(frame, framing.new_batch(1))
    probs, sentiment_map = np.full(6, 1 / 6, np.float32), np.random.default_rng(1).random((7, 7), np.float32)
    drawn = [framing.draw(frame.copy(), probs, sentiment_map, geometry) for _ in range(2)]
    fresh = Overlay(metadata.class_names, 0.45).draw(frame.copy(), probs, sentiment_map, geometry)
    return {
        "normalise": bool(np.array_equal(before, after)),
        "draw, same map": bool(np.array_equal(drawn[1], fresh) and np.array_equal(drawn[0], fresh)),
    }


def print_frame_work(rounds: int = 60) -> list[dict]:
    """``python cli.py benchmark frame-work``: the Markdown table, then whether the kept changes compute the same."""
    rows = measure(rounds)
    print("| step | before ms | after ms | after / before |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['step']} | {row['before_ms']:.3f} | {row['after_ms']:.3f} | {row['ratio']:.2f} |")
    print(f"\nsame result: {same_result()}")
    return rows
