"""The numpy runtime's data-parallel batches (deqa.baselines.numpy_parallel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from deqa.baselines import builtin_model_dir, numpy_parallel
from deqa.baselines.degradation_numpy import load_numpy_degradation_model
from deqa.baselines.numpy_parallel import CHUNK, map_batch, num_threads, set_num_threads


@pytest.fixture
def threads():
    """Set the split explicitly (this machine may have one core), restore the default after."""
    yield set_num_threads
    set_num_threads(None)


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_chunks_keep_order_run_in_threads_with_single_threaded_blas(threads):
    threads(3)
    before = _blas_threads()
    seen = []

    def fn(part):
        seen.append((threading.current_thread().name, len(part), _blas_threads()))
        return part * 2

    x = np.arange((3 * CHUNK + 1) * 2, dtype=np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(map_batch(fn, x), x * 2)
    assert sorted(n for _, n, _ in seen) == [1] + [CHUNK] * 3  # fixed chunks, all of the batch
    assert all(name.startswith("deqa-numpy") for name, _, _ in seen)
    assert all(blas and set(blas) == {1} for _, _, blas in seen)  # no oversubscription inside the threads
    assert _blas_threads() == before  # and BLAS as it was once the batch is done


def test_one_chunk_runs_directly_one_thread_runs_the_same_chunks(threads):
    calls = []

    def fn(part):
        calls.append((threading.current_thread().name, len(part)))
        return part

    here = threading.current_thread().name
    blas = []
    # BLAS at two threads going in, so that "one thread inside" is something the code did.
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        if not before or set(before) != {2}:
            pytest.skip(f"BLAS cannot be set to 2 threads here ({before})")
        threads(2)
        map_batch(lambda part: (blas.append(_blas_threads()), fn(part))[1], np.zeros((CHUNK, 3)))
        assert calls == [(here, CHUNK)]
        threads(1)
        calls.clear()
        map_batch(lambda part: (blas.append(_blas_threads()), fn(part))[1], np.zeros((2 * CHUNK, 3)))
        assert calls == [(here, CHUNK), (here, CHUNK)]  # the chunks do not depend on the thread count
        # BLAS at one thread on these paths too: its kernels (and so the rounding) depend on its threads.
        assert len(blas) == 3 and all(b and set(b) == {1} for b in blas)
        assert _blas_threads() == before
    # A network calling its sub-networks on a chunk: the inner map_batch runs in the outer thread.
    threads(2)
    calls.clear()
    map_batch(lambda part: map_batch(fn, part), np.zeros((2 * CHUNK, 3)))
    assert [n for _, n in calls] == [CHUNK, CHUNK] and all(name.startswith("deqa-numpy") for name, _ in calls)


def test_a_chunk_mapping_several_images_itself_does_not_wait_on_its_own_pool(threads):
    # Every pool thread busy with an outer chunk, each calling map_batch on a batch of several
    # chunks: submitting those to the same pool would wait for ever. Run in a daemon thread so a
    # hang fails the test instead of the suite.
    threads(2)
    x = np.arange(4 * 3 * CHUNK * 2, dtype=np.float32).reshape(-1, 2)
    calls, result = [], {}

    def inner(part):
        calls.append(threading.current_thread().name)
        return part + 1

    def outer(part):
        return map_batch(inner, np.repeat(part, 3, axis=0))

    runner = threading.Thread(target=lambda: result.setdefault("out", map_batch(outer, x)), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "a nested map_batch waited on its own pool"
    np.testing.assert_array_equal(result["out"], np.repeat(x, 3, axis=0) + 1)
    assert len(calls) == 3 * len(x) // CHUNK and all(name.startswith("deqa-numpy") for name in calls)


def test_errors_in_a_thread_reach_the_caller(threads):
    threads(2)

    def fn(part):
        raise ValueError("bad share")

    with pytest.raises(ValueError, match="bad share"):
        map_batch(fn, np.zeros((4, 3)))


def test_thread_count_follows_setting_then_omp_num_threads(monkeypatch, threads):
    monkeypatch.setattr(numpy_parallel.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert num_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert num_threads() == 4  # never more threads than usable cores
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert num_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "²")  # a digit to str.isdigit, not to int()
    assert num_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1,2")  # nested levels: the outer one is ours
    assert num_threads() == 1
    threads(3)
    assert num_threads() == 3
    with pytest.raises(ValueError, match=">= 1"):
        set_num_threads(0)


def test_builtin_model_outputs_do_not_depend_on_the_thread_count(threads):
    """The shipped network (CNN + EfficientNet trunk) over 2 or 3 threads gives the one-thread
    outputs bit for bit, and each chunk's outputs are those of the chunk scored alone."""
    # One image a chunk: with 2, an image's matmul rows shared a call with another image's, and
    # OpenBLAS's kernels rounded them differently by what was beside them (an AVX-512 EPYC).
    assert CHUNK == 1
    net = load_numpy_degradation_model(builtin_model_dir())
    x = np.random.default_rng(0).integers(0, 256, (2 * CHUNK + 1, 96, 96, 3), dtype=np.uint8)
    threads(1)
    one = net.intensities(x)
    for n in (2, 3):
        threads(n)
        np.testing.assert_array_equal(net.intensities(x), one)
    np.testing.assert_array_equal(net.intensities(x[CHUNK : 2 * CHUNK]), one[CHUNK : 2 * CHUNK])
    # Any batching of the same images: alone, in reverse order, in pairs (a resumed run's batches).
    np.testing.assert_array_equal(net.intensities(x[-1:]), one[-1:])
    np.testing.assert_array_equal(net.intensities(x[::-1]), one[::-1])
    np.testing.assert_array_equal(net.intensities(x[1:3]), one[1:3])


def test_concurrent_callers_leave_blas_as_it_was_and_thread_count_bounds_concurrency(threads):
    import time
    from concurrent.futures import ThreadPoolExecutor

    before = _blas_threads()
    threads(2)

    def slow(part):
        time.sleep(0.01)
        return part

    x = np.zeros((8 * CHUNK, 3))
    with ThreadPoolExecutor(3) as callers:  # overlapping map_batch calls from a user's threads
        for out in callers.map(lambda _: map_batch(slow, x), range(9)):
            np.testing.assert_array_equal(out, x)
    assert _blas_threads() == before  # the last one out restored it, not to another caller's 1

    # A pool grown for 6 threads runs no more than the 2 asked for now.
    threads(6)
    map_batch(slow, x)
    threads(2)
    running, peak, lock = 0, 0, threading.Lock()

    def counted(part):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return part

    map_batch(counted, np.zeros((12 * CHUNK, 3)))
    assert peak == 2


def test_overall_score_of_an_image_does_not_depend_on_its_batch():
    """The weighted sum of the heads runs outside map_batch, over the whole batch: a BLAS matmul
    there rounded a row differently alone than with other rows (deqa-score -b 1 vs -b 2)."""
    model = load_numpy_degradation_model(builtin_model_dir())
    s = np.random.default_rng(0).random((64, len(model.cfg.heads)), dtype=np.float32)
    together = model.overall(s)
    alone = np.concatenate([model.overall(s[i : i + 1]) for i in range(len(s))])
    np.testing.assert_array_equal(together, alone)
