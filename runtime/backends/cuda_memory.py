"""The few CUDA calls the TensorRT back-end needs: pinned host buffers, device buffers, one stream,
async copies. cuda-python (NVIDIA's current samples) first, pycuda as a fallback; both imported lazily."""

import ctypes

import numpy as np

from ..errors import RuntimeUserError


class CudaPythonApi:
    """cuda-python runtime API (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.8)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # older cuda-python layouts
        self.cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate())

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.cudart.cudaGetErrorName(err)[1]
            raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def pinned_empty(self, shape: tuple, dtype) -> np.ndarray:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        ptr = self._check(self.cudart.cudaMallocHost(nbytes))
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
        self._pinned = getattr(self, "_pinned", {})
        self._pinned[array.ctypes.data] = ptr
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        ptr = self._pinned.pop(array.ctypes.data, None)
        if ptr is not None:
            self._check(self.cudart.cudaFreeHost(ptr))

    def device_alloc(self, nbytes: int) -> int:
        return int(self._check(self.cudart.cudaMalloc(max(nbytes, 1))))

    def device_free(self, ptr: int) -> None:
        self._check(self.cudart.cudaFree(ptr))

    def htod_async(self, device_ptr: int, host: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def dtoh_async(self, host: np.ndarray, device_ptr: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self.stream))

    def gpu_name(self) -> str:
        device = self._check(self.cudart.cudaGetDevice())
        props = self._check(self.cudart.cudaGetDeviceProperties(device))
        name = props.name
        return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()

    def close(self) -> None:
        for ptr in list(getattr(self, "_pinned", {}).values()):
            self.cudart.cudaFreeHost(ptr)
        self._pinned = {}
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


class PyCudaApi:
    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context on device 0)
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()
        self._device = {}

    def pinned_empty(self, shape: tuple, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if hasattr(base, "free"):
            base.free()

    def device_alloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(max(nbytes, 1))
        self._device[int(allocation)] = allocation
        return int(allocation)

    def device_free(self, ptr: int) -> None:
        allocation = self._device.pop(ptr, None)
        if allocation is not None:
            allocation.free()

    def htod_async(self, device_ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(device_ptr, host, self.stream)

    def dtoh_async(self, host: np.ndarray, device_ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(host, device_ptr, self.stream)

    @property
    def stream_handle(self) -> int:
        return self.stream.handle

    def synchronize(self) -> None:
        self.stream.synchronize()

    def gpu_name(self) -> str:
        return self.cuda.Context.get_device().name().strip()

    def close(self) -> None:
        for ptr in list(self._device):
            self.device_free(ptr)


def open_cuda_api():
    """cuda-python if installed, else pycuda; one clear line when neither is."""
    errors = []
    for api in (CudaPythonApi, PyCudaApi):
        try:
            return api()
        except ImportError as exc:
            errors.append(f"{api.name}: {exc}")
        except Exception as exc:  # installed but no driver / no GPU
            raise RuntimeUserError(f"cannot use the GPU through {api.name}: {exc}") from None
    raise RuntimeUserError(
        "TensorRT engines need cuda-python or pycuda for GPU buffers; install one (pip install 'wscnet-edge[tensorrt]')"
    )
