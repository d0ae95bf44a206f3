"""TensorRT engine back-end without a GPU: sidecar checks, shape logic and the whole infer path
(pinned buffers, one stream, H2D → execute_async_v3 → D2H) against fakes of tensorrt and CUDA.
The real thing runs where tensorrt imports (skipped here)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.backends import open_backend
from runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    check_compatibility,
    check_plugins,
    read_sidecar,
    resolve_input_shape,
)
from runtime.errors import RuntimeUserError

CLASSES = ["amusement", "anger", "awe"]
S = 64


def write_engine(tmp_path, **overrides):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized-engine")
    sidecar = {
        "metadata": {
            "class_names": json.dumps(CLASSES),
            "input_size": str(S),
            "mean": "[0.5, 0.5, 0.5]",
            "std": "[0.25, 0.25, 0.25]",
            "precision": "fp16",
            "arch": "resnet18",
        },
        "tensorrt_version": "10.13.0.35",
        "gpu_name": "NVIDIA H200",
        "compute_capability": "9.0",
        "built_from": "model.onnx",
        "io": {"image": [-1, 3, S, S]},
    }
    sidecar.update(overrides)
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    return engine


class FakeCuda:
    """Device memory is a dict of numpy arrays; every call is logged in order."""

    def __init__(self, gpu="NVIDIA H200"):
        self.memory, self.log, self.gpu, self.next_ptr, self.pinned = {}, [], gpu, 0x1000, 0
        self.stream_handle = 77

    def gpu_name(self):
        return self.gpu

    def pinned_empty(self, shape, dtype):
        self.pinned += 1
        return np.empty(shape, dtype)

    def free_pinned(self, array):
        self.pinned -= 1

    def device_alloc(self, nbytes):
        ptr, self.next_ptr = self.next_ptr, self.next_ptr + nbytes + 256
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def device_free(self, ptr):
        del self.memory[ptr]

    def htod_async(self, ptr, host):
        self.log.append("htod")
        self.memory[ptr][:] = np.frombuffer(host.tobytes(), np.uint8)

    def dtoh_async(self, host, ptr):
        self.log.append("dtoh")
        host[...] = np.frombuffer(self.memory[ptr].tobytes(), host.dtype).reshape(host.shape)

    def synchronize(self):
        self.log.append("sync")

    def close(self):
        self.log.append("close")


def fake_tensorrt(cuda, version="10.13.0.35"):
    """Just enough of the TensorRT 10 Python API; the 'network' returns per-image channel means."""
    io_mode = SimpleNamespace(INPUT="in", OUTPUT="out")
    tensors = {
        "image": ("in", (-1, 3, S, S)),
        "probs": ("out", (-1, 3)),
        "det_scores": ("out", (-1, 3)),
        "sentiment_map": ("out", (-1, 1, 2, 2)),
    }

    class Context:
        def __init__(self):
            self.shapes, self.addresses = {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)

        def get_tensor_shape(self, name):
            n = self.shapes["image"][0]
            return (n, *tensors[name][1][1:])

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            assert stream == cuda.stream_handle
            cuda.log.append("execute")
            x = cuda.memory[self.addresses["image"]].view(np.float32).reshape(self.get_tensor_shape("image"))
            means = x.mean(axis=(2, 3))  # N×3
            outputs = {
                "probs": means,
                "det_scores": -means,
                "sentiment_map": np.repeat(means[:, :1], 4, axis=1).reshape(-1, 1, 2, 2),
            }
            for name, value in outputs.items():
                cuda.memory[self.addresses[name]][:] = np.frombuffer(value.astype(np.float32).tobytes(), np.uint8)
            return True

    class Engine:
        num_io_tensors = len(tensors)

        def get_tensor_name(self, i):
            return list(tensors)[i]

        def get_tensor_mode(self, name):
            return tensors[name][0]

        def get_tensor_shape(self, name):
            return tensors[name][1]

        def get_tensor_dtype(self, name):
            return "float32"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"serialized-engine" else None

    logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    return SimpleNamespace(
        __version__=version, Logger=logger, Runtime=Runtime, TensorIOMode=io_mode, nptype=lambda dtype: np.float32
    )


def test_sidecar_is_read(tmp_path):
    sidecar = read_sidecar(write_engine(tmp_path))
    assert sidecar.metadata.class_names == tuple(CLASSES) and sidecar.metadata.input_size == S
    assert sidecar.metadata.precision == "fp16"
    assert (sidecar.tensorrt_version, sidecar.gpu_name, sidecar.compute_capability) == (
        "10.13.0.35",
        "NVIDIA H200",
        "9.0",
    )


def test_sidecar_problems_are_one_line(tmp_path):
    engine = tmp_path / "lonely.engine"
    engine.write_bytes(b"x")
    with pytest.raises(RuntimeUserError, match=r"sidecar lonely.engine.json not found"):
        read_sidecar(engine)
    (tmp_path / "lonely.engine.json").write_text("{not json")
    with pytest.raises(RuntimeUserError, match="not a readable JSON sidecar"):
        read_sidecar(engine)
    (tmp_path / "lonely.engine.json").write_text(json.dumps({"metadata": {}, "tensorrt_version": "10.3"}))
    with pytest.raises(RuntimeUserError, match="sidecar lacks 'gpu_name'"):
        read_sidecar(engine)


def test_version_and_gpu_mismatch_explained(tmp_path):
    engine = write_engine(tmp_path)
    sidecar = read_sidecar(engine)
    check_compatibility(engine, sidecar, "10.13.0", "H200")  # same release, vendor prefix aside
    with pytest.raises(RuntimeUserError, match=r"built with TensorRT 10.13.0.35 but TensorRT 10.3.0 is installed"):
        check_compatibility(engine, sidecar, "10.3.0", "NVIDIA H200")
    with pytest.raises(RuntimeUserError, match=r"built for GPU 'NVIDIA H200' but this GPU is 'NVIDIA A100"):
        check_compatibility(engine, sidecar, "10.13.0.35", "NVIDIA A100-SXM4-80GB")


def test_engine_with_unregistered_plugin_is_explained(tmp_path):
    engine = write_engine(tmp_path)
    sidecar_file = tmp_path / (engine.name + ".json")
    data = json.loads(sidecar_file.read_text())
    data["plugins"] = ["wscnet::CrossSpatialPoolMap"]
    sidecar_file.write_text(json.dumps(data))
    sidecar = read_sidecar(engine)
    assert sidecar.plugins == ("wscnet::CrossSpatialPoolMap",)
    other = SimpleNamespace(plugin_namespace="other", name="CrossSpatialPoolMap")
    with pytest.raises(RuntimeUserError, match=r"plugin wscnet::CrossSpatialPoolMap, which is not registered"):
        check_plugins(engine, sidecar, SimpleNamespace(all_creators=[other]))
    ours = SimpleNamespace(plugin_namespace="wscnet", name="CrossSpatialPoolMap")
    check_plugins(engine, sidecar, SimpleNamespace(all_creators=[other, ours]))


def test_input_shape_resolution():
    assert resolve_input_shape((-1, 3, 224, 224), (4, 3, 224, 224), "image") == (4, 3, 224, 224)
    assert resolve_input_shape((1, 3, 224, 224), (1, 3, 224, 224), "image") == (1, 3, 224, 224)
    with pytest.raises(RuntimeUserError, match=r"takes N×3×224×224, got a batch of 1×3×256×256"):
        resolve_input_shape((-1, 3, 224, 224), (1, 3, 256, 256), "image")
    with pytest.raises(RuntimeUserError, match="takes 1×3×224×224"):
        resolve_input_shape((1, 3, 224, 224), (2, 3, 224, 224), "image")


def test_infer_path_with_fakes(tmp_path):
    cuda = FakeCuda()
    backend = TensorRTBackend(trt_module=fake_tensorrt(cuda), cuda_api=cuda)
    backend.load(write_engine(tmp_path))
    assert backend.metadata.class_names == tuple(CLASSES) and backend.input_name == "image"
    assert backend.fixed_batch is None  # the fake engine's input batch is dynamic (-1)
    x = np.random.default_rng(0).normal(size=(2, 3, S, S)).astype(np.float32)
    out = backend.infer(x)
    np.testing.assert_allclose(out["probs"], x.mean(axis=(2, 3)), rtol=1e-5)
    assert out["sentiment_map"].shape == (2, 1, 2, 2)
    assert cuda.log == ["htod", "execute", "dtoh", "dtoh", "dtoh", "sync"]  # one stream, in order
    assert cuda.pinned == 4  # input + three outputs, pinned once

    out["probs"][:] = 0  # results are copies: the next frame does not overwrite them
    second = backend.infer(x[:1] * 2)
    assert cuda.pinned == 4  # a new batch size re-allocates, freeing the old buffers
    np.testing.assert_allclose(second["probs"], 2 * x[:1].mean(axis=(2, 3)), rtol=1e-5)
    backend.close()
    assert cuda.pinned == 0 and cuda.memory == {} and cuda.log[-1] == "close"


def test_engine_for_another_gpu_is_refused_before_deserializing(tmp_path):
    cuda = FakeCuda(gpu="NVIDIA GeForce RTX 4090")
    backend = TensorRTBackend(trt_module=fake_tensorrt(cuda), cuda_api=cuda)
    with pytest.raises(RuntimeUserError, match="built for GPU 'NVIDIA H200'"):
        backend.load(write_engine(tmp_path))


def test_engine_that_does_not_deserialize(tmp_path):
    engine = write_engine(tmp_path)
    engine.write_bytes(b"corrupt")
    cuda = FakeCuda()
    with pytest.raises(RuntimeUserError, match="could not deserialize"):
        TensorRTBackend(trt_module=fake_tensorrt(cuda), cuda_api=cuda).load(engine)


def test_without_tensorrt_installed_the_message_says_what_to_do(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeUserError, match="tensorrt package is not installed"):
            open_backend(write_engine(tmp_path))
    else:
        pytest.skip("tensorrt is installed here")


@pytest.mark.gpu
def test_real_engine_matches_onnx_runtime(tmp_path_factory, tmp_path):
    """On a GPU box: build an engine from the exported ONNX, run both back-ends on the same batch."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only)")
    from runtime_fixtures import exported_model

    from runtime.backends.cuda_memory import open_cuda_api

    try:
        gpu = open_cuda_api()
    except RuntimeUserError as exc:
        pytest.skip(str(exc))
    name = gpu.gpu_name()
    gpu.close()
    onnx_path = exported_model(tmp_path_factory)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    engine_bytes = builder.build_serialized_network(network, builder.create_builder_config())
    engine = tmp_path / "m.engine"
    engine.write_bytes(bytes(engine_bytes))
    with open_backend(onnx_path, device="cpu") as cpu:
        metadata = cpu.metadata
        sidecar = {
            "metadata": {
                "class_names": json.dumps(list(metadata.class_names)),
                "input_size": str(metadata.input_size),
                "mean": json.dumps(list(metadata.mean)),
                "std": json.dumps(list(metadata.std)),
            },
            "tensorrt_version": trt.__version__,
            "gpu_name": name,
        }
        (tmp_path / "m.engine.json").write_text(json.dumps(sidecar))
        x = np.random.default_rng(0).normal(size=(1, 3, metadata.input_size, metadata.input_size)).astype(np.float32)
        expected = cpu.infer(x)
    with open_backend(engine) as backend:
        got = backend.infer(x)
    for key in ("probs", "det_scores", "sentiment_map"):
        np.testing.assert_allclose(got[key], expected[key], atol=2e-3, rtol=1e-2)
