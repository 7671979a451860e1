"""Run the numpy networks data-parallel: a batch's images split over threads, BLAS one thread each.

Why: numpy runs its elementwise ufuncs and array copies (im2col, padding, ReLU, the depthwise
convs' shifted sums) on one core; only its matmuls use the BLAS thread pool. Half of the numpy
runtime's forward pass is such single-core work, so two cores ran it at ~1.2x one core. Each
thread running the whole network on its share of the batch, with BLAS held to one thread so the
threads do not oversubscribe the cores, uses every core for every op (the ufuncs and BLAS
release the GIL): bench/baseline_speed.py measured the built-in model's numpy network at
16.0 -> 25.7 images/s on 2 cores (BENCHMARKS.md).

An image's outputs are the same up to float32 rounding however the batch is split, as they
already were for different batch sizes (BLAS picks its kernels by the matrix shapes; measured
differences <= 6e-7 in an intensity either way); the parts are concatenated in order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

__all__ = ["num_threads", "set_num_threads", "map_batch"]

_configured: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_local = threading.local()


def num_threads() -> int:
    """Threads the numpy runtime splits a batch over: :func:`set_num_threads`'s value, else the
    cores this process may run on, capped by ``OMP_NUM_THREADS`` when that is set (the variable
    that tells torch and BLAS how many threads to use; launchers such as ``torchrun`` set it to 1
    per process, and so do users running several jobs side by side)."""
    if _configured is not None:
        return _configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(omp)) if omp.isdigit() and int(omp) >= 1 else cores


def set_num_threads(n: int | None) -> None:
    """Split batches over ``n`` threads (1: no splitting, every op as numpy and BLAS run it;
    None: back to the number of usable cores)."""
    global _configured
    if n is not None and int(n) < 1:
        raise ValueError(f"numpy runtime threads must be >= 1, got {n}")
    _configured = None if n is None else int(n)


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < size:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="deqa-numpy"), size
    return _pool


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspects the loaded libraries once: numpy's BLAS is loaded by now


def map_batch(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``fn(images)``, computed as ``fn`` of contiguous shares of the batch in parallel threads and
    concatenated along axis 0. Runs ``fn`` directly for one image, one thread, or when called from
    inside another ``map_batch`` (a network calling its sub-networks splits once, at the top).

    The BLAS limit is process-wide while the threads run (threadpoolctl has no per-thread one):
    another thread doing BLAS work at the same moment runs single-threaded meanwhile, correctly.
    """
    parts = min(len(images), num_threads())
    if parts <= 1 or getattr(_local, "inside", False):
        return fn(images)
    bounds = np.linspace(0, len(images), parts + 1).round().astype(int)

    def work(i: int) -> np.ndarray:
        _local.inside = True
        try:
            return fn(images[bounds[i] : bounds[i + 1]])
        finally:
            _local.inside = False

    with _controller().limit(limits=1, user_api="blas"):
        outs = list(_executor(parts).map(work, range(parts)))
    return np.concatenate(outs, axis=0)
