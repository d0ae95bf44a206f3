"""A fixed-batch model pads and slices inside its back-end; callers (bench's check images) never do.

The model is hand-made with onnx.helper, batch fixed at 2, so every output is known in advance:
``probs`` is each image's per-channel mean, ``det_scores`` its per-channel max and
``sentiment_map`` its mean over channels. Image i is constant 10·i + c in channel c.
"""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks.measure import predict_in_batches
from runtime.backends import open_backend

SIZE = 32
FIXED = 2


def fixed_batch_model(path, batch: int | str = FIXED) -> str:
    """The hand-made model with batch ``batch`` (a number: fixed; a name: any size)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])
    outputs = [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 3]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [batch, 3]),
        helper.make_tensor_value_info("sentiment_map", TensorProto.FLOAT, [batch, 1, SIZE, SIZE]),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["probs"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMax", ["image"], ["det_scores"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["image"], ["sentiment_map"], axes=[1], keepdims=1),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "fixed-batch", [image], outputs),
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
    )
    for key, value in {
        "class_names": ["a", "b", "c"],
        "input_size": SIZE,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def constant_images(n: int) -> np.ndarray:
    values = 10.0 * np.arange(n)[:, None] + np.arange(3)[None, :]  # image i, channel c: 10 i + c
    return np.ascontiguousarray(np.broadcast_to(values[:, :, None, None], (n, 3, SIZE, SIZE)), dtype=np.float32)


def expected(n: int) -> dict[str, np.ndarray]:
    probs = np.array([[10.0 * i + c for c in range(3)] for i in range(n)], dtype=np.float32)
    maps = np.stack([np.full((1, SIZE, SIZE), 10.0 * i + 1) for i in range(n)]).astype(np.float32)
    return {"probs": probs, "det_scores": probs, "sentiment_map": maps}


def counted(backend) -> list[int]:
    """The batch size of every ``infer_impl`` call the back-end makes from now on."""
    calls: list[int] = []
    run = backend.infer_impl
    backend.infer_impl = lambda batch: calls.append(len(batch)) or run(batch)
    return calls


def test_the_backend_slices_and_pads_any_batch_for_a_fixed_batch_model(tmp_path):
    with open_backend(fixed_batch_model(tmp_path / "b2.onnx"), device="cpu") as backend:
        assert backend.fixed_batch == FIXED
        calls = counted(backend)
        for n in (1, 2, 3, 5):
            calls.clear()
            got = backend.infer(constant_images(n))
            assert calls == [FIXED] * -(-n // FIXED)  # whole slices of 2, the last one padded
            for name, value in expected(n).items():
                np.testing.assert_allclose(got[name], value, rtol=1e-6)


def test_a_bounded_batch_is_sliced_without_padding(tmp_path):
    # a Triton model's max_batch_size; a dynamic-batch ONNX file stands in for the server here
    with open_backend(fixed_batch_model(tmp_path / "dynamic.onnx", batch="N"), device="cpu") as backend:
        assert backend.fixed_batch is None
        backend.max_batch = 2
        calls = counted(backend)
        for n, slices in ((1, [1]), (2, [2]), (5, [2, 2, 1])):
            calls.clear()
            got = backend.infer(constant_images(n))
            assert calls == slices
            for name, value in expected(n).items():
                np.testing.assert_allclose(got[name], value, rtol=1e-6)


def test_bench_predictions_feed_any_batch_to_a_fixed_batch_model(tmp_path):
    with open_backend(fixed_batch_model(tmp_path / "b2.onnx"), device="cpu") as backend:
        got = predict_in_batches(backend, constant_images(7), batch=3)  # chunks of 3, 3, 1
    for name, value in expected(7).items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6)
