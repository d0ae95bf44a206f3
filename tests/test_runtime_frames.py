"""Per-frame pieces: pre-processing, the overlay, smoothing."""

import cv2
import numpy as np
import pytest
from runtime_fixtures import scene

from runtime.contract import InputContract
from runtime.overlay import Overlay, map_to_frame_colors
from runtime.preprocess import Preprocessor, frame_to_tensor, plan_geometry
from runtime.smoothing import EmaSmoother

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


BLUE, RED, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)  # BGR


def normalised(bgr) -> np.ndarray:
    """The model-input value of one BGR colour: RGB, /255, minus mean, over std (3 floats)."""
    rgb = np.array(bgr[::-1], np.float32) / 255.0
    return (rgb - np.float32(MEAN)) / np.float32(STD)


def halves(w: int, h: int) -> np.ndarray:
    """A frame blue in its left half, red in its right half."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w // 2], frame[:, w // 2 :] = BLUE, RED
    return frame


def assert_colour(block: np.ndarray, bgr) -> None:
    """Every pixel of a 3×h×w block of the model input is the colour ``bgr``."""
    expected = normalised(bgr)[:, None, None]
    np.testing.assert_allclose(block, np.broadcast_to(expected, block.shape), atol=1e-5)


@pytest.mark.parametrize("w, h", [(128, 96), (96, 128), (640, 360), (64, 64), (201, 67)])
def test_squash_puts_the_whole_frame_in_the_input(w, h):
    pre = Preprocessor(InputContract(64, MEAN, STD, "squash", extra_views=()))
    out = pre.new_buffer()
    geo = pre(halves(w, h), out)
    assert geo.frame_rect == (0, 0, w, h) and geo.content == (0, 0, 64, 64)
    assert_colour(out[0, :, :, :30], BLUE)  # a pixel or two at the seam may blend
    assert_colour(out[0, :, :, 34:], RED)


@pytest.mark.parametrize(
    "w, h, content", [(640, 480, (0, 8, 64, 48)), (480, 640, (8, 0, 48, 64)), (640, 360, (0, 14, 64, 36))]
)
def test_letterbox_keeps_the_aspect_with_mean_colour_bars(w, h, content):
    pre = Preprocessor(InputContract(64, MEAN, STD, "letterbox", extra_views=()))
    out = pre.new_buffer()
    geo = pre(halves(w, h), out)
    x, y, cw, ch = content
    assert geo.content == content
    picture = np.zeros((64, 64), bool)
    picture[y : y + ch, x : x + cw] = True
    assert np.all(out[0][:, ~picture] == 0.0)  # bars: zero, which is the mean colour
    inside = out[0, :, y + 1 : y + ch - 1, x : x + cw]
    assert_colour(inside[:, :, : cw // 2 - 2], BLUE)
    assert_colour(inside[:, :, cw // 2 + 2 :], RED)


def test_crop_takes_the_centre_square():
    frame = np.zeros((96, 160, 3), np.uint8)
    frame[:, :32] = frame[:, 128:] = GREEN  # outside the centre square: must not show
    frame[:, 32:80], frame[:, 80:128] = BLUE, RED
    pre = Preprocessor(InputContract(64, MEAN, STD, "crop", extra_views=()))
    out = pre.new_buffer()
    geo = pre(frame, out)
    assert geo.frame_rect == (32, 0, 96, 96) and geo.content == (0, 0, 64, 64)
    assert_colour(out[0, :, :, :30], BLUE)
    assert_colour(out[0, :, :, 34:], RED)


def test_reused_buffer_gets_clean_bars_when_the_frame_size_changes():
    pre = Preprocessor(InputContract(64, MEAN, STD, "letterbox", extra_views=()))
    out = pre.new_buffer()
    pre(np.full((64, 64, 3), 255, np.uint8), out)  # fills the whole input
    pre(halves(48, 96), out)  # tall: bars left and right
    assert np.all(out[0, :, :, :15] == 0.0) and np.all(out[0, :, :, 49:] == 0.0)


def test_frame_to_tensor_follows_the_contract_it_is_given():
    frame = halves(128, 64)
    squash = frame_to_tensor(frame, InputContract(32, MEAN, STD, "squash", extra_views=()))
    crop = frame_to_tensor(frame, InputContract(32, MEAN, STD, "crop", extra_views=()))
    assert squash.shape == crop.shape == (3, 32, 32)
    assert_colour(squash[:, :, :14], BLUE)
    assert_colour(crop[:, :, :14], BLUE)  # the centre square is half blue, half red as well
    letterbox = frame_to_tensor(frame, InputContract(32, MEAN, STD, "letterbox", extra_views=()))
    assert np.all(letterbox[:, :8] == 0.0)  # 128×64 → 32×16: 8 rows of bar above


def test_geometry_plans():
    g = plan_geometry(640, 480, 224, "letterbox")
    assert g.content == (0, 28, 224, 168) and g.frame_rect == (0, 0, 640, 480)
    with pytest.raises(ValueError):
        plan_geometry(640, 480, 224, "stretch")


def test_sentiment_map_lands_where_it_belongs():
    """A map hot in its right half must colour the frame's right half red (JET high), left blue."""
    geo = plan_geometry(320, 160, 64, "letterbox")  # content: 64×32 in the middle of the input
    smap = np.zeros((8, 8), np.float32)
    smap[:, 4:] = 1.0
    colours = map_to_frame_colors(smap, geo)
    assert colours.shape == (160, 320, 3)
    left, right = colours[:, :120].mean(axis=(0, 1)), colours[:, 200:].mean(axis=(0, 1))
    assert left[0] > left[2] and right[2] > right[0]  # BGR: blue left, red right


def test_overlay_blends_with_opacity_and_writes_top3():
    frame = np.full((240, 320, 3), 128, np.uint8)
    geo = plan_geometry(320, 240, 64, "letterbox")
    smap = np.random.default_rng(0).random((2, 2)).astype(np.float32)
    probs = np.array([0.1, 0.6, 0.05, 0.25], np.float32)
    names = ["amusement", "anger", "awe", "contentment"]
    untouched = Overlay(names, opacity=0.0).draw(frame.copy(), probs, smap, geo)
    assert np.array_equal(untouched[120:220], frame[120:220])  # only the label box changed
    assert not np.array_equal(untouched[:40, :80], frame[:40, :80])
    blended = Overlay(names, opacity=0.45).draw(frame.copy(), probs, smap, geo, readout="30.0 fps")
    assert np.abs(blended[120:200].astype(int) - 128).mean() > 10
    assert not np.array_equal(blended[-10:, :60], untouched[-10:, :60])  # the readout


def test_crop_overlay_touches_only_the_crop():
    frame = np.full((100, 200, 3), 128, np.uint8)
    geo = plan_geometry(200, 100, 64, "crop")
    out = Overlay(["a", "b"], opacity=0.5, top_k=0).draw(
        frame.copy(), np.array([0.5, 0.5]), np.eye(2, dtype=np.float32), geo
    )
    assert np.array_equal(out[:, :50], frame[:, :50]) and np.array_equal(out[:, 150:], frame[:, 150:])
    assert not np.array_equal(out[:, 50:150], frame[:, 50:150])


def test_ema():
    ema = EmaSmoother(0.8)
    first = ema("p", np.array([1.0, 0.0]))
    np.testing.assert_allclose(first, [1.0, 0.0])
    np.testing.assert_allclose(ema("p", np.array([0.0, 1.0])), [0.8, 0.2])
    np.testing.assert_allclose(ema("p", np.array([0.0, 1.0])), [0.64, 0.36])
    np.testing.assert_allclose(ema("m", np.ones((2, 2))), np.ones((2, 2)))  # independent streams
    np.testing.assert_allclose(ema("p", np.ones(3)), np.ones(3))  # a new shape starts over
    off = EmaSmoother(0.0)
    off("p", np.array([1.0]))
    np.testing.assert_allclose(off("p", np.array([0.0])), [0.0])
    with pytest.raises(ValueError):
        EmaSmoother(1.0)


def test_shrink_antialiases():
    """1-pixel stripes must average to flat grey, not alias into bands as plain bilinear does; a
    natural picture comes out as INTER_AREA makes it."""
    from runtime.preprocess import shrink

    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::2] = 255
    ours = shrink(stripes, 224, 168).astype(float)
    bilinear = cv2.resize(stripes, (224, 168), interpolation=cv2.INTER_LINEAR).astype(float)
    assert ours.shape == (168, 224, 3)
    assert abs(ours.mean() - 127.5) < 2 and ours.std() < 3
    assert bilinear.std() > 30
    picture = scene(2, 640, 480)
    area = cv2.resize(picture, (224, 168), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(shrink(picture, 224, 168) - area).mean() < 4
