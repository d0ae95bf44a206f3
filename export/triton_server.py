"""Start the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships, on loopback, for tests
and benchmarks on a machine without NVIDIA's container.

The wheel holds the server, its python backend and one python-backend stub per Python version; the
stub for the running Python is put beside the backend in a private backend folder (the installed
package is left as it is). The wheel has no onnxruntime or tensorrt backend, so only python-backend
models are served this way.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from wscnet.errors import UserError

LOOPBACK = "127.0.0.1"


def wheel_root() -> Path:
    """``pytriton/tritonserver`` of the installed wheel; one line when it is missing."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")  # located, not imported: its Python API wants numpy < 2
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "tritonserver comes from the nvidia-pytriton wheel: "
            "pip install --no-deps -c constraints.txt nvidia-pytriton"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def backend_folder(target: Path) -> Path:
    """A backend directory with the wheel's python backend and the stub for this Python."""
    root = wheel_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise UserError(f"{stub}: the nvidia-pytriton wheel has no python-backend stub for Python {version}")
    python = target / "python"
    shutil.copytree(root / "backends" / "python", python, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, python / "triton_python_backend_stub")
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class LocalTritonServer:
    """``tritonserver`` serving ``repository`` on loopback HTTP and gRPC ports; a context manager."""

    def __init__(
        self,
        repository: Path,
        models: tuple[str, ...] = (),
        http_port: int = 0,
        grpc_port: int = 0,
        log: Path | None = None,
    ) -> None:
        if not Path(repository).is_dir():
            raise UserError(f"{repository}: model repository not found")
        self.repository = Path(repository)
        self.models = tuple(models)  # load only these (explicit model control); () loads every model
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.log = log
        self.process: subprocess.Popen | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None

    def command(self, backends: Path) -> list[str]:
        return [
            str(wheel_root() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
        ] + (["--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models)] if self.models else [])

    def environment(self) -> dict:
        env = dict(os.environ)
        libs = wheel_root().parent.parent / "nvidia_pytriton.libs"
        # the stub links libpython3.X.so: this interpreter's (first on the path) with its own home
        python_lib = sysconfig.get_config_var("LIBDIR") if sysconfig.get_config_var("Py_ENABLE_SHARED") else None
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [python_lib, env.get("LD_LIBRARY_PATH"), str(libs)]))
        env["PYTHONHOME"] = sys.base_prefix
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        # the stub embeds Python but not this interpreter's packages: numpy, onnxruntime for model.py
        packages = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), *sorted(packages)]))
        return env

    def start(self, timeout: float = 90.0) -> "LocalTritonServer":
        self._scratch = tempfile.TemporaryDirectory(prefix="wscnet-triton-")
        backends = backend_folder(Path(self._scratch.name))
        output = open(self.log, "wb") if self.log else subprocess.DEVNULL
        # a process group of its own: stop() ends the python-backend stubs too, even after a SIGKILL
        self.process = subprocess.Popen(
            self.command(backends),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise UserError(
                    f"tritonserver exited with code {self.process.returncode} while starting"
                    + (f"; see {self.log}" if self.log else "")
                )
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/v2/health/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise UserError(f"tritonserver was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            try:  # stubs left behind by a server that was killed
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m export.triton_server REPO``: serve REPO's CPU models (python backend and the image
    ensemble) on loopback until Ctrl-C."""
    import argparse

    from .triton_repo import SERVED_ON_CPU

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("repository", type=Path)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(SERVED_ON_CPU),
        help="models to load (the wheel has only the python backend)",
    )
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the server on SIGTERM too
    try:
        with LocalTritonServer(args.repository, tuple(args.models), args.http_port, args.grpc_port) as server:
            print(
                f"serving {', '.join(args.models)} on {LOOPBACK}: gRPC port {server.grpc_port} "
                f"(triton://{LOOPBACK}:{server.grpc_port}/{args.models[0]}), HTTP port {server.http_port}; "
                "Ctrl-C stops",
                flush=True,
            )
            server.process.wait()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
