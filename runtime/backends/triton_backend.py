"""Triton Inference Server as a back-end: ``triton://HOST:PORT/MODEL`` (gRPC) or
``triton+http://HOST:PORT/MODEL`` (HTTP), through ``tritonclient`` (the ``triton`` extra).

The server runs the model; this client sends the pre-processed batch and reads the three outputs.
Class names, the input contract and the rest of the metadata come from the model's config
``parameters`` (what ``export --format triton`` writes), decoded as JSON, never evaluated. A server
that stops answering mid-run is retried a bounded number of times, then the run ends with one line.
"""

import time
from urllib.parse import urlsplit

import numpy as np

from ..choices import TRITON_SCHEMES, is_triton_url  # noqa: F401 (is_triton_url: part of this module's interface)
from ..errors import RuntimeUserError
from ..metadata import ModelMetadata
from .base import OUTPUT_NAMES, Backend

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
RETRIES = 3  # failed calls in a row before the run ends
RETRY_WAIT_S = 0.5  # doubled after each failure
TIMEOUT_S = 10.0


def parse_triton_url(url: str) -> tuple[str, str, str]:
    """(protocol, "host:port", model name) of a ``triton://`` address; one line when it is not one."""
    parts = urlsplit(url)
    protocol = TRITON_SCHEMES.get(parts.scheme)
    name = parts.path.strip("/")
    if protocol is None or not parts.hostname or not name or "/" in name:
        raise RuntimeUserError(f"{url}: expected triton://HOST:PORT/MODEL (gRPC) or triton+http://HOST:PORT/MODEL")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise RuntimeUserError(f"{url}: the port is not a number") from None
    return protocol, f"{parts.hostname}:{port}", name


def import_client(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError:
        raise RuntimeUserError("a triton:// model needs tritonclient: pip install -e '.[triton]'") from None
    return client


class TritonBackend(Backend):
    name = "triton"

    def __init__(self, retries: int = RETRIES, retry_wait_s: float = RETRY_WAIT_S) -> None:
        if retries < 0 or retry_wait_s < 0:
            raise ValueError("retries and retry_wait_s must be >= 0")
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.client = None

    def load(self, path) -> None:
        self.url = str(path)
        self.protocol, self.address, self.model_name = parse_triton_url(self.url)
        self.lib = import_client(self.protocol)
        self.client = self.lib.InferenceServerClient(self.address, **self._timeouts())
        config = self._model_config()
        props = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        self.metadata = ModelMetadata.from_props(props, self.url)
        self.input_name = config["input"][0]["name"]
        self.max_batch = int(config.get("max_batch_size", 0)) or None

    def _timeouts(self) -> dict:
        if self.protocol == "http":
            return {"connection_timeout": TIMEOUT_S, "network_timeout": TIMEOUT_S}
        return {}

    def _model_config(self) -> dict:
        from tritonclient.utils import InferenceServerException

        try:
            live = self.client.is_server_live()
        except (InferenceServerException, OSError, ConnectionError) as exc:
            raise RuntimeUserError(
                f"{self.url}: no Triton server answers at {self.address} ({_first_line(exc)})"
            ) from None
        if not live:
            raise RuntimeUserError(f"{self.url}: the Triton server at {self.address} is not live")
        try:
            if not self.client.is_model_ready(self.model_name):
                raise RuntimeUserError(
                    f"{self.url}: the server at {self.address} has no ready model {self.model_name!r}"
                )
            config = self.client.get_model_config(
                self.model_name, **({"as_json": True} if self.protocol == "grpc" else {})
            )
        except InferenceServerException as exc:
            raise RuntimeUserError(f"{self.url}: {_first_line(exc)}") from None
        return config.get("config", config)

    def infer_impl(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._infer_with_retries(batch)  # Backend.infer slices to max_batch

    def _infer_with_retries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        from tritonclient.utils import InferenceServerException

        wait = self.retry_wait_s
        for attempt in range(self.retries + 1):
            try:
                return self._infer_once(batch)
            except (InferenceServerException, OSError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise RuntimeUserError(
                        f"{self.url}: the Triton server stopped answering after "
                        f"{self.retries + 1} tries ({_first_line(exc)})"
                    ) from None
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")

    def _infer_once(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        tensor = self.lib.InferInput(self.input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(batch))
        outputs = [self.lib.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        options = {"client_timeout": TIMEOUT_S} if self.protocol == "grpc" else {}
        result = self.client.infer(self.model_name, [tensor], outputs=outputs, **options)
        return {name: result.as_numpy(name) for name in OUTPUT_NAMES}

    @property
    def description(self) -> str:
        return f"triton[{self.protocol} {self.address}/{self.model_name}]"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
