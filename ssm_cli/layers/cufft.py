"""Inverse real FFTs on CUDA that consume their input: cuFFT's complex-to-real transform, called directly.

cuFFT's complex-to-real (C2R) transform overwrites its input, so ``torch.fft.irfft`` first copies
the spectrum it is given: one more read and write of a (B, C, H, L+1) complex tensor per inverse
FFT, about a tenth of a pack's training step on an H100 (``benchmarks/README.md``). The
FFT convolution's inverse FFTs transform spectral products that nothing reads afterwards, so the
copy buys nothing there. ``irfft_consuming(x_f, n)`` runs the same cuFFT transform on ``x_f``'s
own memory and leaves ``x_f`` holding garbage.

The library is the ``libcufft`` that torch has loaded (found in ``/proc/self/maps``), called through
ctypes with cuFFT's public API (``cufftMakePlanMany64``, ``cufftExecC2R``). Plans are made once per
(device, n, batch) with a work area from torch's allocator, and run on torch's current stream, so
the transform can be captured in a CUDA graph like any torch op (a plan is never made during a
capture: the call falls back to torch there). Anywhere this path does not apply — not CUDA, not
complex64, no library, a plan cuFFT refuses, ``ENABLED = False`` — the result is
``torch.fft.irfft``'s, which these transforms equal (same library, same transform; tests compare).
"""
from __future__ import annotations

import ctypes
import threading

import torch

ENABLED = True  # False: always torch.fft.irfft (benchmarks compare the two)

_CUFFT_C2R = 0x2C
_lock = threading.Lock()
_state: dict = {}  # "lib": ctypes library or None once looked up
_plans: dict = {}  # (device index, n, batch) -> _Plan, or None where cuFFT refused


def _library_path() -> str | None:
    """The path of the libcufft this process has loaded (torch's), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if "/libcufft.so" in path:
                    return path
    except OSError:
        pass
    return None


def library():
    """torch's libcufft through ctypes, or None (not loaded, not Linux, a CPU-only torch)."""
    if "lib" in _state:
        return _state["lib"]
    lib = None
    path = _library_path() if torch.version.cuda else None
    if path is not None:
        try:
            lib = ctypes.CDLL(path)
            i64, p = ctypes.c_longlong, ctypes.c_void_p
            lib.cufftCreate.argtypes = [ctypes.POINTER(ctypes.c_int)]
            lib.cufftSetAutoAllocation.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.cufftMakePlanMany64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(i64), ctypes.POINTER(i64),
                                                i64, i64, ctypes.POINTER(i64), i64, i64, ctypes.c_int, i64,
                                                ctypes.POINTER(ctypes.c_size_t)]
            lib.cufftSetWorkArea.argtypes = [ctypes.c_int, p]
            lib.cufftSetStream.argtypes = [ctypes.c_int, p]
            lib.cufftExecC2R.argtypes = [ctypes.c_int, p, p]
            lib.cufftDestroy.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            lib = None
    _state["lib"] = lib
    return lib


class _Plan:
    """A cuFFT C2R plan of ``batch`` transforms of length ``n`` with its work area (a torch tensor)."""

    def __init__(self, lib, device: torch.device, n: int, batch: int):
        self.lib, self.handle = lib, ctypes.c_int(0)
        _check(lib.cufftCreate(ctypes.byref(self.handle)), "cufftCreate")
        try:
            _check(lib.cufftSetAutoAllocation(self.handle, 0), "cufftSetAutoAllocation")
            dims, work = (ctypes.c_longlong * 1)(n), ctypes.c_size_t(0)
            # NULL embeds: each transform reads n//2 + 1 contiguous complex values and writes n reals
            _check(lib.cufftMakePlanMany64(self.handle, 1, dims, None, 1, n // 2 + 1, None, 1, n, _CUFFT_C2R,
                                           batch, ctypes.byref(work)), "cufftMakePlanMany64")
            self.work = torch.empty(max(int(work.value), 1), dtype=torch.uint8, device=device)
            _check(lib.cufftSetWorkArea(self.handle, ctypes.c_void_p(self.work.data_ptr())), "cufftSetWorkArea")
        except RuntimeError:
            lib.cufftDestroy(self.handle)
            raise

    def __call__(self, x_f: torch.Tensor, out: torch.Tensor, stream: torch.cuda.Stream) -> None:
        _check(self.lib.cufftSetStream(self.handle, ctypes.c_void_p(stream.cuda_stream)), "cufftSetStream")
        _check(self.lib.cufftExecC2R(self.handle, ctypes.c_void_p(x_f.data_ptr()), ctypes.c_void_p(out.data_ptr())),
               "cufftExecC2R")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuFFT status {status}")


def _plan(device: torch.device, n: int, batch: int) -> _Plan | None:
    key = (device.index, n, batch)
    if key in _plans:
        return _plans[key]
    lib = library()
    if lib is None or torch.cuda.is_current_stream_capturing():  # no plan is made inside a capture
        return None
    with _lock, torch.cuda.device(device):
        if key not in _plans:
            try:
                _plans[key] = _Plan(lib, device, n, batch)
            except RuntimeError:  # e.g. a size cuFFT does not plan: torch's path (it may refuse too)
                _plans[key] = None
    return _plans[key]


def irfft_consuming(x_f: torch.Tensor, n: int) -> torch.Tensor:
    """``torch.fft.irfft(x_f, n=n, norm="forward")`` (no 1/n: the unnormalised inverse), computed in
    ``x_f``'s memory on CUDA: afterwards ``x_f`` holds garbage. x_f (..., n//2 + 1) -> (..., n) real.

    Only for a spectrum nothing reads again, that is not saved for backward, and that does not need
    a gradient (inside an autograd Function's forward or backward). n must be even.
    """
    if not (ENABLED and x_f.is_cuda and x_f.dtype == torch.complex64 and n % 2 == 0 and x_f.shape[-1] == n // 2 + 1
            and x_f.numel() and not (x_f.requires_grad and torch.is_grad_enabled())
            and not torch.compiler.is_compiling()):
        return torch.fft.irfft(x_f, n=n, norm="forward")
    x_f = x_f.contiguous()  # a copy only if it was not: that copy is consumed instead
    batch = x_f.numel() // x_f.shape[-1]
    plan = _plan(x_f.device, n, batch)
    if plan is None:
        return torch.fft.irfft(x_f, n=n, norm="forward")
    out = torch.empty(*x_f.shape[:-1], n, dtype=torch.float32, device=x_f.device)
    plan(x_f, out, torch.cuda.current_stream(x_f.device))
    return out
