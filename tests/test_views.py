"""One view or two: the contract's views and how they combine, the decision export measures, and
that the runtime's default path reproduces the figures the decision recorded."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import NUM_CLASSES, exported_model

from export.testing import write_image_folder
from export.views import ASPECTS, KINDS, camera_frame, combined_labels, decide, decide_and_record, held_out_pictures
from runtime.api import Model
from runtime.contract import InputContract
from runtime.framing import Framing
from runtime.metadata import ModelMetadata


def metadata(contract: InputContract) -> ModelMetadata:
    return ModelMetadata(("a", "b", "c"), contract.input_size, contract.mean, contract.std, contract=contract)


def test_combine_round_trips_and_the_default_is_left_out_of_the_file():
    both = InputContract(64).with_views(("squash", "crop"), "max_confidence")
    assert both.views == ("squash", "crop") and both.combine == "max_confidence"
    assert InputContract.from_dict(both.to_dict()) == both
    assert "combine" not in InputContract(64).to_dict()  # readable by runtimes that predate the key
    assert InputContract(64).with_views(("crop",), "max_confidence").combine == "mean"  # one view: no combining
    with pytest.raises(ValueError, match="combine"):
        InputContract(64, combine="median")


def test_framing_combines_views_by_mean_or_by_the_most_confident_view():
    outputs = {
        "probs": np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], np.float32),
        "det_scores": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32),
        "sentiment_map": np.stack([np.full((1, 2, 2), 7.0), np.full((1, 2, 2), 9.0)]).astype(np.float32),
    }
    mean = Framing(metadata(InputContract(64).with_views(("squash", "crop"), "mean")))
    probs, det, sentiment_map = mean.combine(outputs, 0)
    np.testing.assert_allclose(probs, [0.3, 0.2, 0.5])
    assert (sentiment_map == 7.0).all()  # the first view's map either way
    confident = Framing(metadata(InputContract(64).with_views(("squash", "crop"), "max_confidence")))
    probs, det, sentiment_map = confident.combine(outputs, 0)
    np.testing.assert_allclose(probs, [0.1, 0.1, 0.8])  # the crop view is surer (0.8 > 0.5)
    np.testing.assert_allclose(det, [0.0, 0.0, 3.0])
    assert (sentiment_map == 7.0).all()


def test_combined_labels_follow_the_rule():
    probs = {"squash": np.array([[0.6, 0.4], [0.45, 0.55]]), "crop": np.array([[0.1, 0.9], [0.7, 0.3]])}
    assert combined_labels(probs, ("squash",), "mean").tolist() == [0, 1]
    assert combined_labels(probs, ("squash", "crop"), "mean").tolist() == [1, 0]  # 0.35/0.65, 0.575/0.425
    assert combined_labels(probs, ("squash", "crop"), "max_confidence").tolist() == [1, 0]  # 0.9, 0.7 win


def table(squash: tuple, crop: tuple, pair: tuple) -> dict:
    """Hand-made candidates: (mean, worst row) of squash and crop alone, and of the two averaged."""
    return {
        name: {"views": views, "combine": "mean", "mean": figures[0], "worst": figures[1]}
        for name, views, figures in (
            ("squash", ["squash"], squash),
            ("crop", ["crop"], crop),
            ("squash+crop mean", ["squash", "crop"], pair),
        )
    }


def test_two_views_only_where_the_second_adds_more_than_the_margin():
    close = decide(table((0.80, 0.70), (0.83, 0.80), (0.835, 0.805)), margin=0.01)
    assert close["views"] == ["crop"] and close["chosen"] == "crop"
    worth = decide(table((0.80, 0.70), (0.83, 0.80), (0.85, 0.80)), margin=0.01)
    assert worth["views"] == ["squash", "crop"] and worth["gain"] == pytest.approx(0.02)
    worse = decide(table((0.80, 0.70), (0.83, 0.80), (0.79, 0.75)), margin=0.01)
    assert worse["views"] == ["crop"] and "loses 0.040 mean accuracy" in worse["reason"]
    tie = decide(table((0.83, 0.80), (0.83, 0.80), (0.80, 0.75)), margin=0.01)
    assert tie["views"] == ["squash"]  # a tie goes to squash: its map covers the whole frame


def test_a_second_view_that_rescues_one_frame_shape_is_kept():
    # the mean barely moves (+0.005) but the worst row rises from 0.66 to 0.72
    rescue = decide(table((0.70, 0.60), (0.73, 0.66), (0.735, 0.72)), margin=0.01)
    assert rescue["views"] == ["squash", "crop"] and rescue["worst_row_gain"] == pytest.approx(0.06)
    assert "adds 0.060 on the worst row" in rescue["reason"]


def test_camera_frames_have_the_asked_shape_and_keep_the_picture():
    picture = np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    assert camera_frame(picture, ASPECTS["16:9"], "stretched").shape == (60, 107, 3)
    scene = camera_frame(picture, ASPECTS["9:16"], "wider scene")
    assert scene.shape == (107, 60, 3)
    assert (scene[24:84] == picture).all()  # the picture at the centre (47 rows of scene: 24 above)


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    data = write_image_folder(root / "data", num_classes=NUM_CLASSES, per_class=8, size=64, seed=1)
    model = Path(shutil.copy(exported_model(tmp_path_factory, batch=None), root / "model.onnx"))
    line = decide_and_record(model, {"data": str(data)}, n=50)
    return {"model": model, "data": data, "line": line}


def test_export_records_the_decision_and_the_runtime_reads_it_back(decided):
    with Model(decided["model"], device="cpu") as model:
        decision = model.metadata.view_decision
        contract = model.metadata.contract
        info = model.metadata.views_info()
    assert decision is not None and decided["line"].startswith(f"views: {decision['chosen']}")
    assert list(contract.views) == decision["views"]
    assert (contract.combine if len(contract.views) > 1 else "mean") == decision["combine"]
    rows = {f"{a} {k}" for a in ASPECTS for k in KINDS}
    assert all(set(c["rows"]) == rows for c in decision["candidates"].values())
    assert len(decision["candidates"]) == 3 + 3 * 2  # three geometries alone, three pairs × two rules
    assert info["decided_by"] == "measurement at export" and info["views"] == decision["views"]


def test_the_runtime_default_reproduces_the_recorded_figures(decided):
    """Each row's recorded accuracy of the chosen views is what Model.predict gets on those frames."""
    paths, truth, _ = held_out_pictures({"data": str(decided["data"])}, 50)
    pictures = [cv2.imread(str(p)) for p in paths]
    with Model(decided["model"], device="cpu") as model:
        decision = model.metadata.view_decision
        recorded = decision["candidates"][decision["chosen"]]["rows"]
        for aspect, size in ASPECTS.items():
            frames = [camera_frame(p, size, "stretched") for p in pictures]
            labels = np.array([int(np.argmax(model.predict(f).probs)) for f in frames])
            assert float((labels == truth).mean()) == pytest.approx(recorded[f"{aspect} stretched"], abs=1e-4)


def test_info_and_doctor_show_the_decision(decided):
    from jobs.doctor import model_section, run_doctor
    from runtime.serve.info import model_info

    with Model(decided["model"], device="cpu") as model:
        decision = model.metadata.view_decision
        info = model_info(model.metadata, model.description, None, model.backend.choice)
    assert info["views"]["views"] == decision["views"] and info["views"]["decided_by"] == "measurement at export"
    assert info["views"]["reason"] == decision["reason"]
    assert info["device_choice"] == {"device": "cpu", "reason": "--device cpu"}
    lines: list[str] = []
    run_doctor(smoke=False, model=decided["model"], sections=[model_section], echo=lines.append)
    (views_line,) = [line for line in lines if line.startswith("model views")]
    accuracy = decision["candidates"][decision["chosen"]]["mean"]
    assert " + ".join(decision["views"]) in views_line and f"accuracy {accuracy:.3f}" in views_line
    assert decision["reason"] in views_line
