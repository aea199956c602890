"""Helpers shared by the benchmark modules: slow-backend batch, data, timing."""

from __future__ import annotations

import numpy as np

#: backends timed on a reduced batch and scaled per image in the report
SLOW_BACKENDS = {"better", "adhoc"}
SMALL_BATCH = 1


def require_backend(backend: str) -> None:
    """Skip the benchmark if a fastcnn backend cannot load here (numba-aot before ``make aot``)."""
    import pytest

    from fastcnn.kernels import BACKENDS, backend_available

    if backend in BACKENDS and not backend_available(backend):
        pytest.skip(f"backend {backend} not available here (numba-aot: make aot)")


def conv_flops(x_shape, ksize: int, ychn: int, yh: int, yw: int) -> float:
    """Multiply-adds x2 of one conv forward; backward is twice that (g_x and g_k)."""
    return 2.0 * x_shape[0] * yh * yw * ksize * ksize * x_shape[3] * ychn


def data(shape, seed: int = 0) -> np.ndarray:
    """float32 normal samples: the dtype every backend trains in by default."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(benchmark, fn, *, rounds: int | None = None, warmup: bool = True):
    """Time ``fn``: one untimed call first, then pytest-benchmark's calibrated loop.

    ``rounds`` fixes the round count (pure-Python backends that take seconds).
    Returns the median time in seconds.
    """
    if warmup:
        fn()
    if rounds is None:
        benchmark(fn)
    else:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark.stats.stats.median
