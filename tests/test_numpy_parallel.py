"""The numpy runtime's data-parallel batches (deqa.baselines.numpy_parallel)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from deqa.baselines import builtin_model_dir, numpy_parallel
from deqa.baselines.degradation_numpy import load_numpy_degradation_model
from deqa.baselines.numpy_parallel import map_batch, num_threads, set_num_threads


@pytest.fixture
def threads():
    """Set the split explicitly (this machine may have one core), restore the default after."""
    yield set_num_threads
    set_num_threads(None)


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_split_keeps_order_runs_in_threads_with_single_threaded_blas(threads):
    threads(3)
    before = _blas_threads()
    seen = []

    def fn(part):
        seen.append((threading.current_thread().name, len(part), _blas_threads()))
        return part * 2

    x = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    np.testing.assert_array_equal(map_batch(fn, x), x * 2)
    assert sorted(n for _, n, _ in seen) == [2, 2, 3]  # contiguous shares, all of the batch
    assert all(name.startswith("deqa-numpy") for name, _, _ in seen)
    assert all(blas and set(blas) == {1} for _, _, blas in seen)  # no oversubscription inside the threads
    assert _blas_threads() == before  # and BLAS as it was once the batch is done


def test_no_split_for_one_image_one_thread_or_nested_calls(threads):
    calls = []

    def fn(part):
        calls.append((threading.current_thread().name, len(part)))
        return part

    threads(2)
    map_batch(fn, np.zeros((1, 3)))
    assert calls == [(threading.current_thread().name, 1)]
    threads(1)
    calls.clear()
    map_batch(fn, np.zeros((4, 3)))
    assert calls == [(threading.current_thread().name, 4)]
    # A network calling its sub-networks: the inner map_batch runs in the outer thread, whole.
    threads(2)
    calls.clear()
    map_batch(lambda part: map_batch(fn, part), np.zeros((4, 3)))
    assert sorted(n for _, n in calls) == [2, 2] and all(name.startswith("deqa-numpy") for name, _ in calls)


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
    threads(3)
    assert num_threads() == 3
    with pytest.raises(ValueError, match=">= 1"):
        set_num_threads(0)


def test_builtin_model_split_matches_unsplit(threads):
    """The shipped network (CNN + EfficientNet trunk) over 2 or 3 threads gives the one-thread
    outputs, in order, up to float32 rounding."""
    net = load_numpy_degradation_model(builtin_model_dir())
    x = np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    threads(1)
    one = net.intensities(x)
    for n in (2, 3):
        threads(n)
        np.testing.assert_allclose(net.intensities(x), one, rtol=0, atol=2e-6)
