"""GPU compute time of a TensorRT back-end, by CUDA events around ``execute_async_v3`` alone.

trtexec reports "GPU Compute Time" (the engine's kernels, no copies) next to host latency;
the runtime's back-end times neither, so the benchmark wraps its execution context: events are
recorded on the back-end's own stream just before and after the enqueue, and read after the
back-end has synchronised. Only the cuda-python API offers the events here; with pycuda (or if
anything fails) the row simply has no GPU column.
"""


class TimedContext:
    """Forwards everything to a TensorRT execution context, timing ``execute_async_v3``."""

    def __init__(self, context, cuda_api) -> None:
        self._context = context
        self._cuda = cuda_api
        cudart = cuda_api.cudart
        self._start = cuda_api._check(cudart.cudaEventCreate())
        self._end = cuda_api._check(cudart.cudaEventCreate())
        self.recorded = False

    def __getattr__(self, name):
        return getattr(self._context, name)

    def execute_async_v3(self, stream_handle: int) -> bool:
        cudart = self._cuda.cudart
        stream = getattr(self._cuda, "stream", None) or stream_handle  # the binding's own stream object
        self._cuda._check(cudart.cudaEventRecord(self._start, stream))
        ok = self._context.execute_async_v3(stream_handle)
        self._cuda._check(cudart.cudaEventRecord(self._end, stream))
        self.recorded = True
        return ok

    def elapsed_ms(self) -> float | None:
        """GPU time between the events of the last call (the back-end has synchronised by now)."""
        if not self.recorded:
            return None
        return float(self._cuda._check(self._cuda.cudart.cudaEventElapsedTime(self._start, self._end)))

    def destroy(self) -> None:
        for event in (self._start, self._end):
            self._cuda.cudart.cudaEventDestroy(event)


class DeviceTimed:
    """A runtime Backend plus ``last_device_ms`` where its context can be timed; else unchanged."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.timer = None
        context, cuda_api = getattr(backend, "context", None), getattr(backend, "_cuda", None)
        if context is not None and hasattr(cuda_api, "cudart"):
            try:
                self.timer = TimedContext(context, cuda_api)
                backend.context = self.timer
            except Exception:  # no events on this CUDA binding: host latency only
                self.timer = None

    def infer(self, batch):
        return self.backend.infer(batch)

    @property
    def last_device_ms(self) -> float | None:
        return self.timer.elapsed_ms() if self.timer else None

    @property
    def description(self) -> str:
        return self.backend.description

    @property
    def executed_precision(self) -> str:
        return self.backend.executed_precision

    def close(self) -> None:
        if self.timer is not None:  # events first: the back-end's close releases the CUDA API
            self.timer.destroy()
            self.backend.context = self.timer._context
        self.backend.close()
