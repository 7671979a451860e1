"""Run the numpy networks data-parallel: a batch's images split over threads, BLAS one thread each.

Why: numpy runs its elementwise ufuncs and array copies (im2col, padding, ReLU, the depthwise
convs' shifted sums) on one core; only its matmuls use the BLAS thread pool, and much of the
built-in model's EfficientNet trunk is depthwise convs.
Each thread running the whole network on its share of the batch, with BLAS held to one thread so
the threads do not oversubscribe the cores, uses every core for every op (the ufuncs and BLAS
release the GIL): bench/baseline_speed.py measured the built-in model's numpy network at
16.0 -> 32.4 images/s on 2 cores (chunks of 2; BENCHMARKS.md).

Every image runs alone (chunks of :data:`CHUNK` = 1) with BLAS at one thread, whatever the batch
and the thread count, so an image's outputs are the same bit for bit however it is batched (a
run resumed with other batches or another ``OMP_NUM_THREADS`` writes the same bytes). OpenBLAS
picks its kernels by the matrix shapes and by its own thread count: on an AVX-512 AMD EPYC, rows of
one float32 matmul came out different (by rounding) when computed with other rows beside them or on
two BLAS threads instead of one, so neither the rows beside an image nor BLAS's threads may vary.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

__all__ = ["CHUNK", "num_threads", "set_num_threads", "map_batch"]

# Images per chunk: one, so an image's matmuls have the same shapes in every batch (see above).
# bench/baseline_speed.py, batch 16 on 2 cores, chunks of 1, 2, 4, 8 and 16 images (= no split):
# 30.0, 30.5, 29.8, 26.7, 18.4 images/s on the first machine, 58.6, 62.5, 65.4, 62.4, 33.7 on the
# AVX-512 one (BENCHMARKS.md): 1 costs 2-10%, the price of outputs that do not depend on batching.
CHUNK = 1

_configured: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
_limiter = None  # threadpoolctl's limit while any map_batch runs
_inside = 0  # map_batch calls running their threads now
_worker = threading.local()  # .busy: this thread is one of the pool's, running a chunk


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
    # "4" or a nested-parallelism list "4,2" (its first level is ours); anything else is ignored
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isascii() and omp.isdigit() and int(omp) >= 1:
        return min(cores, int(omp))
    return cores


def set_num_threads(n: int | None) -> None:
    """Split batches over ``n`` threads (1: no splitting, every op as numpy and BLAS run it;
    None: back to the number of usable cores)."""
    global _configured
    if n is not None and int(n) < 1:
        raise ValueError(f"numpy runtime threads must be >= 1, got {n}")
    _configured = None if n is None else int(n)


def _executor(size: int) -> ThreadPoolExecutor:
    # Grows, never shrinks nor shuts down (another caller may be submitting to it): map_batch
    # submits only `threads` tasks, so a larger pool than asked for runs no more at once.
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=size, thread_name_prefix="deqa-numpy"), size
        return _pool


@contextmanager
def _blas_single_threaded() -> Iterator[None]:
    """BLAS at one thread while any map_batch runs (threadpoolctl's limit is process-wide): the
    first caller in sets it, the last one out restores the original, so overlapping callers do
    not restore each other's "1" for good."""
    global _limiter, _inside
    with _lock:
        if _inside == 0:
            _limiter = _controller().limit(limits=1, user_api="blas")
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                _limiter.restore_original_limits()
                _limiter = None


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspects the loaded libraries once: numpy's BLAS is loaded by now


def map_batch(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``fn(images)``, computed as ``fn`` of consecutive chunks of :data:`CHUNK` images, run in
    parallel threads and concatenated along axis 0.

    The chunks are the same whatever the thread count, and every chunk runs with BLAS at one
    thread, so the outputs are the same bit for bit: the thread count only decides how many chunks
    run at once. A batch of one chunk runs ``fn`` directly in the caller's thread, still with
    BLAS at one thread (a single image uses one core: the price of its outputs not depending on
    its batch); so does a network's call of its sub-networks on a chunk (a batch splits once, at
    the top), and a chunk's call of map_batch on several images runs them one after another in
    its own thread.

    The BLAS limit is process-wide while any map_batch runs (threadpoolctl has no per-thread one):
    another thread doing BLAS work at the same moment runs single-threaded meanwhile, correctly.
    Safe to call from several threads at once.
    """
    with _blas_single_threaded():  # on every path: BLAS's thread count changes its rounding
        return _map_chunks(fn, images)


def _map_chunks(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    n = len(images)
    if n <= CHUNK:
        return fn(images)
    chunks = [images[i : i + CHUNK] for i in range(0, n, CHUNK)]
    # A chunk's fn calling map_batch on several images from a pool thread runs them here, one
    # after another: submitting to the pool it is part of could wait on workers that are all
    # waiting too (the pool holds only as many threads as the widest call asked for).
    threads = 1 if getattr(_worker, "busy", False) else min(len(chunks), num_threads())
    if threads <= 1:
        return np.concatenate([fn(c) for c in chunks], axis=0)
    # `threads` tasks, each running every threads-th chunk: no more run at once, whatever the
    # pool's size; the outputs go back in chunk order.
    outs: list[np.ndarray | None] = [None] * len(chunks)

    def work(first: int) -> None:
        _worker.busy = True
        try:
            for i in range(first, len(chunks), threads):
                outs[i] = fn(chunks[i])
        finally:
            _worker.busy = False

    for f in [_executor(threads).submit(work, t) for t in range(threads)]:
        f.result()
    return np.concatenate(outs, axis=0)
