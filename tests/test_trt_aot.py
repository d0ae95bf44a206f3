"""The AOT plugin path, every part that needs no GPU or TensorRT (the engine itself: test_plugin_gpu.py).

TensorRT cannot be installed here: ``tensorrt.plugin`` is replaced by a small fake that records what
``aot_impl`` returns, and the PTX is compiled by the real Triton for named GPU targets, then
assembled by Triton's bundled ``ptxas`` as the driver would.
"""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

from export import tensorrt_build as tb
from export import trt_plugin
from runtime.backends.tensorrt_backend import read_sidecar

triton = pytest.importorskip("triton")


@pytest.mark.parametrize(
    "version, mode, words",
    [
        ((10, 3, 0), "inline", "no tensorrt.plugin"),
        ((10, 8, 0, 43), "inline", "not aot_impl"),
        ((10, 9, 0), "aot", "AOT"),
        ((10, 13, 2), "aot", "AOT"),
        ((11, 0, 0), "aot", "AOT"),
    ],
)
def test_plugin_mode_per_tensorrt_release(version, mode, words):
    got, why = trt_plugin.plugin_mode(version)
    assert got == mode and words in why and "\n" not in why


def test_kernel_signature_is_input_scalars_outputs():
    assert list(trt_plugin.kernel_signature("float16").items()) == [
        ("f_ptr", "*fp16"),
        ("C", "i32"),
        ("HW", "i32"),
        ("v_ptr", "*fp16"),
        ("m_ptr", "*fp16"),
    ]
    with pytest.raises(ValueError, match="float32 or float16"):
        trt_plugin.kernel_signature("int8")


def _params(ptx: str, name: str) -> tuple[int, set[int]]:
    declared = sum(
        1 for line in ptx.splitlines() if f"{name}_param_" in line and ".param" in line and "ld.param" not in line
    )
    loaded = {int(line.rsplit("_param_", 1)[1].split("]")[0]) for line in ptx.splitlines() if "ld.param" in line}
    return declared, loaded


@pytest.mark.parametrize("capability, dtype", [((8, 7), "float32"), ((9, 0), "float16")])
def test_ptx_is_produced_without_a_gpu_and_assembles(capability, dtype, tmp_path):
    kernel = trt_plugin.compile_ptx((24, 7, 9), 4, "max", "softmax", dtype, capability)
    arch = trt_plugin.ptx_header(kernel.ptx)["target"]
    # Triton targets the arch-specific sm_90a on Hopper: fine for an engine, which is tied to its GPU anyway
    assert arch in {f"sm_{capability[0]}{capability[1]}", f"sm_{capability[0]}{capability[1]}a"}
    assert f".entry {kernel.name}(" in kernel.ptx.replace(".visible ", "")
    assert (kernel.channels, kernel.hw) == (6, 63) and kernel.threads % 32 == 0
    declared, loaded = _params(kernel.ptx, kernel.name)
    # our five arguments are read; Triton's trailing scratch pointers (never passed by TensorRT) are not
    assert declared >= 5 and loaded == {0, 1, 2, 3, 4}
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.is_file():
        pytest.skip("Triton's bundled ptxas is missing")
    (tmp_path / "k.ptx").write_text(kernel.ptx)
    result = subprocess.run(
        [str(ptxas), f"-arch={arch}", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k.cubin").stat().st_size > 0


def test_bad_attributes_are_refused_before_compiling():
    with pytest.raises(ValueError, match="multiple of k"):
        trt_plugin.compile_ptx((30, 7, 7), 4, "max", "softmax", "float32", (8, 0))
    with pytest.raises(ValueError, match="pool"):
        trt_plugin.compile_ptx((32, 7, 7), 4, "sum", "softmax", "float32", (8, 0))


class _Sym:
    """A symbolic value as tensorrt.plugin's SymInt32 / ShapeExpr: records what it wraps."""

    def __init__(self, value):
        self.value = value.value if isinstance(value, _Sym) else value

    def __floordiv__(self, other):
        return _Sym(f"({self.value})//{other}")


def _fake_trtp(registered: dict):
    class Exprs(list):
        @classmethod
        def from_tuple(cls, items):
            return cls(items)

    class Launch:
        grid_x = block_x = shared_mem = None

    def decorator(kind):
        return lambda name: lambda fn: registered.setdefault((kind, name), fn)

    return SimpleNamespace(
        TensorDesc=SimpleNamespace,
        Tensor=object,
        ShapeExprs=Exprs,
        SymIntExprs=Exprs,
        SymExprs=Exprs,
        SymInt32=_Sym,
        KernelLaunchParams=Launch,
        from_shape_expr=lambda shape, dtype: SimpleNamespace(shape_expr=shape, dtype=dtype),
        register=decorator("register"),
        aot_impl=decorator("aot_impl"),
    )


def test_registration_defines_the_shape_function_and_the_aot_kernel(monkeypatch):
    registered = {}
    monkeypatch.setattr(trt_plugin, "_registered", False)
    monkeypatch.setattr(trt_plugin, "_aot_compiled", [])
    fake = _fake_trtp(registered)
    trt_plugin.register_plugin(fake, capability=(8, 6))
    trt_plugin.register_plugin(fake, capability=(8, 6))  # idempotent
    name = trt_plugin.PLUGIN_NAME
    assert set(registered) == {("register", name), ("aot_impl", name)}
    exprs = [_Sym("N"), _Sym(24), _Sym(7), _Sym(7)]
    v, m = registered[("register", name)](SimpleNamespace(shape_expr=exprs, dtype="DataType.FLOAT"), 4, "avg", "raw")
    assert [e.value for e in v.shape_expr] == ["N", "(24)//4"] and m.shape_expr == [exprs[0], exprs[2], exprs[3]]
    # a dynamic batch: TensorRT's Shape holds -1 there, and the grid is the batch expression
    fprime = SimpleNamespace(shape=(-1, 24, 7, 7), shape_expr=exprs, dtype="DataType.FLOAT")
    kernel_name, ptx, launch, scalars = registered[("aot_impl", name)](fprime, 4, "avg", "raw", (), 0)
    assert kernel_name == "pool_map_kernel" and ".entry pool_map_kernel" in ptx
    assert launch.grid_x.value == "N" and launch.block_x % 32 == 0 and launch.shared_mem >= 0
    assert [s.value for s in scalars] == [6, 49]  # C = 24 / 4, HW = 7 × 7
    assert [k.name for k in trt_plugin.aot_kernels_compiled()] == ["pool_map_kernel"]
    assert trt_plugin.ptx_header(ptx)["target"] == "sm_86"  # the capability given at registration


def test_registration_needs_aot_impl(monkeypatch):
    monkeypatch.setattr(trt_plugin, "_registered", False)
    old = _fake_trtp({})
    del old.aot_impl
    with pytest.raises(Exception, match="aot_impl"):
        trt_plugin.register_plugin(old)


def _tiny_fused_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    from export.fused_op import DOMAIN, OP_TYPE, PLUGIN_NAMESPACE, make_function

    node = helper.make_node(
        OP_TYPE,
        ["F"],
        ["v", "M"],
        domain=DOMAIN,
        k=2,
        pool="max",
        map_weight="softmax",
        plugin_namespace=PLUGIN_NAMESPACE,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("F", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("M", TensorProto.FLOAT, ["N", 3, 3]),
        ],
    )
    return helper.make_model(
        graph,
        functions=[make_function("max", "softmax", 18)],
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)],
    )


def _attrs(model):
    node = tb.fused_nodes(model)[0]
    return node.domain, node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_node_layout_the_parser_needs_per_release(monkeypatch):
    lines = []
    monkeypatch.setattr(trt_plugin, "_registered", True)  # register_plugin would import tensorrt.plugin
    aot = _tiny_fused_model()
    assert tb.prepare_fused_node(aot, True, "10.13.2.6", echo=lines.append) == "aot-plugin"
    domain, op_type, attrs = _attrs(aot)
    # op_type = plugin name, plugin_namespace attribute (and the domain, read from 10.10) = namespace, aot=1
    assert (domain, op_type) == ("wscnet", "CrossSpatialPoolMap")
    assert attrs["plugin_namespace"] == b"wscnet" and attrs["aot"] == 1
    onnx.checker.check_model(aot, full_check=True)

    old = _tiny_fused_model()
    assert tb.prepare_fused_node(old, True, "10.8.0", echo=lines.append) == "inline"
    assert "plugin_namespace" not in _attrs(old)[2] and "aot" not in _attrs(old)[2]
    default = _tiny_fused_model()
    assert tb.prepare_fused_node(default, False, "10.13.0", echo=lines.append) == "inline"
    assert "plugin_namespace" not in _attrs(default)[2]
    assert len(lines) == 2 and "10.8.0" in lines[1] and "function body" in lines[1]


def test_aot_sidecar_needs_no_registration_in_the_runtime(tmp_path):
    from export.onnx_metadata import metadata_from_checkpoint
    from tests.test_tensorrt_build import CKPT

    records = [{"name": "pool_map_kernel", "ptx_isa": "8.8", "target": "sm_90"}]
    data = tb.sidecar_data(
        metadata_from_checkpoint(CKPT, img_size=64, fused_op=True),
        tensorrt_version="10.13.2.6",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
        built_from=Path("m.onnx"),
        input_size=64,
        batch=1,
        plugins=[],
        precision="fp32",
        fused_node="aot-plugin",
        aot_kernels=records,
    )
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    (tmp_path / "m.engine.json").write_text(__import__("json").dumps(data))
    sidecar = read_sidecar(engine)
    assert sidecar.plugins == ()  # so TensorRTBackend.load asks for no registered plugin
    assert data["fused_node"] == "aot-plugin" and data["aot_kernels"] == records
