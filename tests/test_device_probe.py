"""``--device auto`` on a CPU: the probe's choice, its cache and its overrides, with real ONNX Runtime
and OpenVINO sessions on a tiny exported model."""

import hashlib
import json
import logging

import numpy as np
import pytest
from runtime_fixtures import exported_model

from runtime.backends import open_backend
from runtime.backends import probe as probe_module
from runtime.backends.probe import CACHE_ENV, REFERENCE, TIE_SHARE, Candidate, cache_path, fastest, parity_mismatch

pytest.importorskip("openvino")


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return exported_model(tmp_path_factory)


def test_auto_probes_picks_the_fastest_matching_backend_and_caches_it(model, cache_dir, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    with open_backend(model, threads=1) as backend:
        choice = backend.choice
    assert choice["cached"] is False and set(choice["times_ms"]) == {"onnxruntime", "openvino-fp32"}
    times = choice["times_ms"]
    fastest_measured = min(times, key=times.get)
    # the fastest measured, unless ONNX Runtime is within the tie share of it
    tie = times[fastest_measured] >= times["onnxruntime"] * (1 - TIE_SHARE)
    assert choice["device"] == ("onnxruntime" if tie else fastest_measured)
    assert backend.name == ("onnxruntime" if choice["device"] == "onnxruntime" else "openvino")
    assert [r.message for r in caplog.records if "device auto" in r.message] == [
        f"device auto: {choice['device']} ({choice['reason']}; measured now)"
    ]
    stored = json.loads((cache_dir / "device-choice.json").read_text())
    ((key, entry),) = stored.items()
    assert json.loads(key)["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads(key)["threads"] == 1 and entry["device"] == choice["device"]
    with open_backend(model, threads=1) as again:
        assert again.choice["cached"] is True and again.choice["device"] == choice["device"]
    with open_backend(model, threads=2) as other_threads:  # another thread count: measured again
        assert other_threads.choice["cached"] is False
    assert len(json.loads((cache_dir / "device-choice.json").read_text())) == 2


@pytest.mark.parametrize(
    "cached, backend_name",
    [({"device": "cpu", "precision": None}, "onnxruntime"), ({"device": "openvino", "precision": "fp32"}, "openvino")],
)
def test_a_cached_choice_is_what_auto_loads_and_device_still_forces(model, cache_dir, cached, backend_name):
    open_backend(model, threads=1).close()  # writes the entry
    path = cache_path()
    stored = json.loads(path.read_text())
    ((key, entry),) = stored.items()
    stored[key] = {**entry, "candidate": cached, "device": backend_name}
    path.write_text(json.dumps(stored))
    with open_backend(model, threads=1) as backend:
        assert backend.name == backend_name and backend.choice["cached"] is True
    forced = "openvino" if backend_name == "onnxruntime" else "cpu"
    with open_backend(model, device=forced, threads=1) as backend:
        assert backend.name != backend_name and backend.choice == {"device": forced, "reason": f"--device {forced}"}


def test_a_backend_missing_the_parity_targets_is_left_out(model, cache_dir, monkeypatch):
    monkeypatch.setitem(probe_module.PARITY_TARGETS, "fp32", {"probs_max_abs": -1.0})  # nothing can meet it
    with open_backend(model, threads=1) as backend:
        assert backend.name == "onnxruntime"  # the reference itself is never compared
        assert set(backend.choice["rejected"]) == {"openvino-fp32"}
        assert "probs max abs" in backend.choice["rejected"]["openvino-fp32"]
        assert "left out: openvino-fp32" in backend.choice["reason"]


def test_an_unreadable_cache_is_measured_again_and_rewritten(model, cache_dir, caplog):
    cache_dir.mkdir(parents=True)
    (cache_dir / "device-choice.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="runtime"), open_backend(model, threads=1) as backend:
        assert backend.choice["cached"] is False
    assert any("unreadable device-choice cache" in r.message for r in caplog.records)
    assert len(json.loads((cache_dir / "device-choice.json").read_text())) == 1
    assert [p.name for p in cache_dir.iterdir()] == ["device-choice.json"]  # no temporary file left


def outputs(probs, maps=None):
    probs = np.asarray(probs, np.float32)
    maps = np.arange(len(probs) * 4, dtype=np.float32).reshape(-1, 1, 2, 2) if maps is None else maps
    return {"probs": probs, "sentiment_map": maps}


def test_parity_mismatch_applies_the_precision_targets():
    reference = outputs([[0.7, 0.3], [0.2, 0.8], [0.51, 0.49]])
    assert parity_mismatch(reference, outputs([[0.7, 0.3], [0.2, 0.8], [0.51, 0.49]]), "fp32") is None
    assert "probs max abs" in parity_mismatch(reference, outputs([[0.699, 0.301], [0.2, 0.8], [0.51, 0.49]]), "fp32")
    # the third frame is a near tie (0.51 / 0.49): a flip there is not held against INT8
    assert parity_mismatch(reference, outputs([[0.6, 0.4], [0.3, 0.7], [0.48, 0.52]]), "int8") is None
    assert "top-1" in parity_mismatch(reference, outputs([[0.4, 0.6], [0.3, 0.7], [0.51, 0.49]]), "int8")
    flat = outputs([[0.7, 0.3], [0.2, 0.8], [0.51, 0.49]], maps=np.random.default_rng(0).random((3, 1, 2, 2)))
    assert "map correlation" in parity_mismatch(reference, flat, "int8+bf16")  # held to INT8's targets


def test_another_backend_must_beat_onnxruntime_by_more_than_the_tie_share():
    openvino = Candidate("openvino", "fp32")
    assert fastest({REFERENCE: 10.0, openvino: 7.9}) == openvino  # 21 % faster
    assert fastest({REFERENCE: 10.0, openvino: 9.6}) == REFERENCE  # 4 %: a tie, the reference keeps it
    assert fastest({REFERENCE: 10.0, openvino: 12.0}) == REFERENCE
    bf16 = Candidate("openvino", "bf16")
    assert fastest({REFERENCE: 10.0, openvino: 8.0, bf16: 6.0}) == bf16


def test_doctor_shows_what_auto_picked_for_the_model_on_this_machine(model, cache_dir):
    from jobs.doctor import model_section, run_doctor

    def device_lines() -> list[str]:
        lines: list[str] = []
        run_doctor(smoke=False, model=model, sections=[model_section], echo=lines.append)
        return [line for line in lines if line.startswith("device auto")]

    (before,) = device_lines()
    assert "not probed on this machine yet" in before
    with open_backend(model, threads=1) as backend:
        choice = backend.choice
    assert probe_module.cached_choices(model) == [
        (1, {k: v for k, v in choice.items() if k != "cached"} | {"model": str(model)})
    ]
    (after,) = device_lines()
    assert f"{choice['device']} at --threads 1 ({choice['reason']})" in after
