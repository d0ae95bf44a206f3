"""The runtime is built in layers: every import (at the top of a file or inside a function) points to
the same layer or a lower one, and no two files import each other, directly or round a circle."""

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"

# lowest first: choices and errors → back-ends → model → sources and sinks → pipeline → live page → front
LAYERS = (
    {"choices", "errors", "events", "contract", "videoio", "smoothing", "controls", "batching", "periodic"},
    {"validate", "metadata", "preprocess", "overlay", "mosaic", "framing"},
    {"backends"},
    {"model"},
    {
        "sources",
        "gst",
        "gst_frames",
        "uri",
        "camera_check",
        "sinks",
        "pacing",
        "reload",
        "service",
        "outputs",
        "scheduling",
        "publishers",
        "events_out",
    },
    {"pipeline"},
    {"serve"},
    {"api", "video", "config", "commands", "doctor", "__init__"},
)


def layer_of(room: str) -> int:
    found = [i for i, rooms in enumerate(LAYERS) if room in rooms]
    assert found, f"runtime/{room} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return found[0]


def room_of(path: Path) -> str:
    relative = path.relative_to(RUNTIME)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def runtime_imports(path: Path, root: Path = RUNTIME) -> set[str]:
    """Dotted names of the runtime modules ``path`` imports anywhere in it (runtime.x.y → "x.y")."""
    package = ["runtime", *path.relative_to(root).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t.removeprefix("runtime.") for t in targets if t.startswith("runtime.")}
    return found


def module_file(dotted: str) -> Path | None:
    candidate = RUNTIME.joinpath(*dotted.split("."))
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if path.is_file():
            return path
    return module_file(dotted.rpartition(".")[0]) if "." in dotted else None  # "from .x import name"


def test_every_import_points_to_the_same_layer_or_below():
    upward = []
    for path in sorted(RUNTIME.rglob("*.py")):
        here = layer_of(room_of(path))
        for target in runtime_imports(path):
            target_file = module_file(target)
            if target_file is not None and layer_of(room_of(target_file)) > here:
                upward.append(f"{path.relative_to(RUNTIME)} -> {target}")
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_no_circle_of_imports():
    graph = {path: {module_file(t) for t in runtime_imports(path)} - {None, path} for path in RUNTIME.rglob("*.py")}
    state: dict[Path, int] = {}

    def visit(node: Path, trail: list[Path]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                circle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import circle: " + " -> ".join(str(p.relative_to(RUNTIME)) for p in circle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_the_checker_sees_an_import_inside_a_function(tmp_path):
    """A hand-made file: the import hidden in a function is found like one at the top."""
    (tmp_path / "backends").mkdir()
    hidden = tmp_path / "backends" / "x.py"
    hidden.write_text("import os\n\ndef f():\n    from ..pipeline import Pipeline\n    return Pipeline\n")
    assert runtime_imports(hidden, tmp_path) == {"pipeline"}


def test_every_run_setting_is_documented_in_the_runtime_readme():
    """runtime/README.md lists each webcam flag: the schema in runtime/config.py is the one source."""
    from runtime.config import SETTINGS

    readme = (RUNTIME / "README.md").read_text(encoding="utf-8")
    missing = [s.option.split("/")[0] for s in SETTINGS if f"`{s.option.split('/')[0]}" not in readme]
    assert not missing, f"runtime/README.md does not document {', '.join(missing)}"
