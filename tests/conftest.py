"""Shared fixtures: backend parametrization and reproducible random inputs.

``backend`` / ``any_backend`` run a test on every backend; the ``adhoc``
and ``better`` backends are pure-Python loops, so tests using these fixtures
must keep their arrays tiny. ``fast_backend`` covers only the vectorised or
compiled backends (``numba``, ``numba-aot``, ``numpy``) and may use larger shapes.
A backend that cannot load here (``numba-aot`` before ``make aot``) is skipped,
with the reason, instead of failing every test.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn.kernels import BACKENDS, backend_available

ALL_BACKENDS = tuple(BACKENDS)
FAST_BACKENDS = ("numba", "numba-aot", "numpy")
SLOW_BACKENDS = tuple(name for name in ALL_BACKENDS if name not in FAST_BACKENDS)
FLOAT_DTYPES = (np.float64, np.float32)


def backend_params(names) -> list:
    """pytest params for backend names; those that cannot load here are marked skip."""
    return [
        name if backend_available(name)
        else pytest.param(name, marks=pytest.mark.skip(reason=f"backend {name!r} not available here "
                                                            "(numba-aot: build it with `make aot`)"))
        for name in names
    ]


@pytest.fixture(params=backend_params(ALL_BACKENDS))
def backend(request) -> str:
    """Every backend name; use with tiny shapes only."""
    return request.param


@pytest.fixture(params=backend_params(ALL_BACKENDS))
def any_backend(request) -> str:
    """Alias of ``backend``: every backend name, tiny shapes only."""
    return request.param


@pytest.fixture(params=backend_params(FAST_BACKENDS))
def fast_backend(request) -> str:
    """The fast backends only (numba, numba-aot, numpy): larger shapes are fine."""
    return request.param


@pytest.fixture(params=FLOAT_DTYPES, ids=["f64", "f32"])
def dtype(request):
    return request.param


def make_rng(seed: int = 0) -> np.random.Generator:
    """A generator with a fixed seed, so every run sees the same numbers."""
    return np.random.default_rng(seed)


def _random_array(shape, dtype=np.float64, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Standard-normal array of ``shape`` in ``dtype`` from a fixed seed."""
    return (make_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _distinct_array(shape, dtype=np.float64, seed: int = 0, step: float = 0.1) -> np.ndarray:
    """Array whose entries all differ by at least ``step`` (no max-pool ties, FD-safe)."""
    size = int(np.prod(shape))
    values = (make_rng(seed).permutation(size) - size / 2) * step
    return values.reshape(shape).astype(dtype)


@pytest.fixture
def random_array():
    """``random_array(shape, dtype=float64, seed=0, scale=1.0)``: fixed-seed normal array."""
    return _random_array


@pytest.fixture
def distinct_array():
    """``distinct_array(shape, dtype=float64, seed=0, step=0.1)``: tie-free array."""
    return _distinct_array


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh fixed-seed generator per test."""
    return make_rng(1234)
