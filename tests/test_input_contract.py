"""One input contract from training to the camera: stored once, read by every consumer, and the
training / eval transforms, the runtime and the exported-model tools all see a picture alike."""

import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from export.onnx_export import export_onnx
from export.onnx_metadata import read_metadata, write_metadata
from export.testing import make_trained_checkpoint, synthetic_image
from runtime.backends import open_backend
from runtime.contract import InputContract
from runtime.errors import RuntimeUserError
from runtime.metadata import ModelMetadata
from runtime.preprocess import frame_to_tensor
from wscnet.checkpoint import checkpoint_contract, load_checkpoint, make_checkpoint, save_checkpoint
from wscnet.data import eval_transform, train_transform, views_transform
from wscnet.data.transforms import cut_window

SIZES = [(96, 72), (128, 72), (72, 128), (101, 67), (64, 64)]  # 4:3, 16:9, 9:16, odd, square
RNG = np.random.default_rng(3)


def picture(w: int, h: int) -> np.ndarray:
    """A BGR picture with structure at every scale (noise on top of smooth gradients)."""
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return np.clip(smooth + RNG.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    ckpt = make_trained_checkpoint(root / "best.pt", size=64, steps=30, num_classes=4)
    return {"ckpt": ckpt, "onnx": export_onnx(ckpt, root / "model.onnx"), "root": root}


def test_contract_travels_from_checkpoint_to_onnx_to_runtime(tmp_path):
    model = torch.nn.Module()
    from wscnet.model import WSCNet, WSCNetConfig

    model = WSCNet(WSCNetConfig(arch="resnet18", num_classes=2))
    contract = InputContract(
        64, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), geometry="crop", interpolation="linear", extra_views=("letterbox",)
    )
    save_checkpoint(tmp_path / "c.pt", make_checkpoint(model, class_names=["a", "b"], input_size=64, contract=contract))
    _, ckpt = load_checkpoint(tmp_path / "c.pt")
    assert checkpoint_contract(ckpt) == contract
    path = export_onnx(tmp_path / "c.pt", tmp_path / "c.onnx")
    backend = open_backend(path, device="cpu")
    assert backend.metadata.contract == contract and backend.metadata.contract_recorded
    backend.close()


def test_files_without_a_contract_use_the_documented_fallback(tmp_path, trained):
    model = onnx.load(str(trained["onnx"]))
    props = read_metadata(model)
    del props["input_contract"]
    write_metadata(model, props)
    onnx.save(model, str(tmp_path / "old.onnx"))
    meta = open_backend(tmp_path / "old.onnx", device="cpu").metadata
    assert not meta.contract_recorded
    assert (meta.contract.geometry, meta.contract.input_size) == ("squash", 64)
    _, ckpt = load_checkpoint(trained["ckpt"])
    del ckpt["input_contract"]
    assert checkpoint_contract(ckpt).geometry == "squash"


@pytest.mark.parametrize(
    "stored, message",
    [
        ({"input_size": 64, "geometry": "stretch"}, "geometry must be one of"),
        ({"input_size": 64, "colour": "BGR"}, "unknown input-contract keys"),
        ({"input_size": 64, "geometry": "crop", "extra_views": ["crop"]}, "views must differ"),
        ({"input_size": 32}, "disagrees with input_size"),
    ],
)
def test_a_bad_contract_in_a_model_is_one_clear_error(stored, message):
    props = {
        "class_names": '["a", "b"]',
        "input_size": "64",
        "mean": "[0.485, 0.456, 0.406]",
        "std": "[0.229, 0.224, 0.225]",
        "input_contract": json.dumps(stored),
    }
    with pytest.raises(RuntimeUserError, match=message):
        ModelMetadata.from_props(props, "m.onnx")


def test_overriding_the_geometry_names_what_the_model_was_trained_with():
    meta = ModelMetadata.from_props(
        {"class_names": '["a", "b"]', "input_size": "64", "mean": "[0, 0, 0]", "std": "[1, 1, 1]"}, "m.onnx"
    )
    assert meta.override_note(None) is None and meta.override_note("squash") is None
    assert "trained with squash" in meta.override_note("letterbox")
    assert meta.contract_for("crop").geometry == "crop"


@pytest.mark.parametrize("geometry", ["squash", "crop", "letterbox"])
@pytest.mark.parametrize("w, h", SIZES)
def test_eval_transform_gives_the_runtime_tensor(geometry, w, h):
    contract = InputContract(32, geometry=geometry, extra_views=())
    bgr = picture(w, h)
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    np.testing.assert_allclose(eval_transform(contract)(rgb).numpy(), frame_to_tensor(bgr, contract), atol=1e-6)


@pytest.mark.parametrize("augment", ["aspect", "camera", "sides", "paper"])
@pytest.mark.parametrize("w, h", SIZES)
def test_train_transform_is_the_runtime_on_a_random_window(augment, w, h):
    """A training sample is what the runtime would make of a camera frame showing that window."""
    contract = InputContract(32)
    transform = train_transform(contract, augment)
    bgr = picture(w, h)
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    torch.manual_seed(11)
    sample = transform(rgb)
    torch.manual_seed(11)  # replay the same window and flip
    x, y, cw, ch = transform.window(w, h)
    flip = bool(torch.rand(()) < 0.5)
    expected = frame_to_tensor(cut_window(bgr, x, y, cw, ch, flip), contract)
    np.testing.assert_allclose(sample.numpy(), expected, atol=1e-6)
    if augment == "paper":
        assert cw == ch == round(min(w, h) * 7 / 8)
    elif augment == "sides":
        assert 0.5 * w - 1 <= cw <= 2 * w + 1 and 0.5 * h - 1 <= ch <= 2 * h + 1
    else:
        assert 9 / 16 - 0.05 <= cw / ch <= 16 / 9 + 0.05


@pytest.mark.parametrize("augment, low, high", [("aspect", 0.6, 1.0), ("camera", 0.6, 2.0)])
def test_window_areas_span_their_range(augment, low, high):
    """``aspect`` windows stay inside the picture's area; ``camera`` windows also zoom out to a frame
    twice the picture's area (a 16:9 frame around a square picture is 16/9 of it)."""
    transform = train_transform(InputContract(32), augment)
    torch.manual_seed(0)
    areas = [cw * ch / (200 * 200) for _, _, cw, ch in (transform.window(200, 200) for _ in range(400))]
    assert low - 0.02 <= min(areas) and max(areas) <= high + 0.02
    assert min(areas) < low + 0.1 and max(areas) > high - 0.15
    zoomed_out = sum(a > 1.05 for a in areas) / len(areas)
    assert zoomed_out == 0 if augment == "aspect" else 0.3 < zoomed_out < 0.7


def test_sides_windows_draw_each_side_alone_and_cover_the_camera_views_of_a_picture():
    """Each side spans 1/2..2 of the picture's, independently of the other, so the windows a camera
    frame makes (one side kept, the other 9/16 or 16/9 of it) are drawn as often as any."""
    transform = train_transform(InputContract(32), "sides")
    torch.manual_seed(0)
    sides = np.array([(cw / 400, ch / 400) for _, _, cw, ch in (transform.window(400, 400) for _ in range(2000))])
    assert sides.min() >= 0.5 - 0.01 and sides.max() <= 2.0 + 0.01
    assert sides.min(axis=0).max() < 0.55 and sides.max(axis=0).min() > 1.9
    logs = np.log(sides)
    assert abs(np.corrcoef(logs[:, 0], logs[:, 1])[0, 1]) < 0.1  # drawn independently
    quarter = np.log(2.0) / 2  # a quarter of the log range around a point, in each direction
    for camera_view in [(16 / 9, 1.0), (1.0, 16 / 9), (9 / 16, 1.0), (1.0, 9 / 16), (1.0, 1.0)]:
        near = (np.abs(logs - np.log(camera_view)) < quarter).all(axis=1).mean()
        assert near > 0.12  # a uniform square of side 2·ln 2 puts 1/4 in a centred box of side ln 2


def test_a_camera_window_larger_than_the_picture_holds_it_whole_inside_a_reflected_scene():
    bgr = picture(40, 30)
    x, y, cw, ch = -20, -5, 80, 45  # a 16:9 frame around the picture, the picture at (20, 5)
    frame = cut_window(bgr, x, y, cw, ch)
    assert frame.shape[:2] == (45, 80)
    np.testing.assert_array_equal(frame[5:35, 20:60], bgr)
    np.testing.assert_array_equal(frame[5:35, 19], bgr[:, 1])  # reflected about the picture's edge


def test_views_transform_is_every_view_of_the_runtime():
    contract = InputContract(32)  # squash + crop
    bgr = picture(128, 72)
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    views = views_transform(contract)(rgb).numpy()
    assert views.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(views[0], frame_to_tensor(bgr, contract.with_geometry("squash")), atol=1e-6)
    np.testing.assert_allclose(views[1], frame_to_tensor(bgr[:, 28:100], contract.with_geometry("squash")), atol=1e-6)


def stretched_frames(image_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """The picture as a camera would deliver it in other shapes (stretched to the frame)."""
    s = image_bgr.shape[0]
    shapes = {
        "1:1": (s, s),
        "4:3": (s * 4 // 3, s),
        "16:9": (s * 16 // 9, s),
        "9:16": (s, s * 16 // 9),
        "odd": (s + 37, s - 9),
    }
    return {name: cv2.resize(image_bgr, size, interpolation=cv2.INTER_LINEAR) for name, size in shapes.items()}


def test_runtime_top1_equals_eval_top1_for_every_frame_shape(trained):
    """The default runtime path (``runtime.Model``: the model's contract, its views averaged) agrees
    with `eval` on >= 99 % of pictures for each frame shape. (The old letterbox default did not.)"""
    from runtime.api import Model

    model, ckpt = load_checkpoint(trained["ckpt"])
    contract = checkpoint_contract(ckpt)
    assert contract.views == ("squash", "crop")  # the training default
    transform = eval_transform(contract)
    rng = np.random.default_rng(5)
    pictures = [cv2.cvtColor(synthetic_image(i % 4, 64, rng), cv2.COLOR_RGB2BGR) for i in range(60)]
    with torch.inference_mode():  # square pictures: every view is the whole picture
        batch = torch.stack([transform(Image.fromarray(cv2.cvtColor(p, cv2.COLOR_BGR2RGB))) for p in pictures])
        reference = model(batch).logits.argmax(1).numpy()
    assert len(set(reference.tolist())) >= 3, "the model must tell the classes apart for this to mean anything"
    agreement = {}
    with Model(trained["onnx"], device="cpu") as runtime:
        for name in stretched_frames(pictures[0]):
            got = [int(np.argmax(runtime.predict(stretched_frames(p)[name]).probs)) for p in pictures]
            agreement[name] = float((np.array(got) == reference).mean())
    assert all(v >= 0.99 for v in agreement.values()), agreement
