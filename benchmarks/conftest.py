"""Shared fixtures of the kernel benchmarks: workloads, thread counts, a timing helper.

Benchmarks are collected only with ``pytest --benchmark`` (see the root conftest).
Workloads and the timing helper live in ``test_bench_kernels.py``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def numba_threads() -> int:
    """Threads numba's parallel kernels use (NUMBA_NUM_THREADS, default: all cores)."""
    from fastcnn.kernels import numba_cpu  # imports numba (through numba_kernels)

    return numba_cpu.num_threads()


@pytest.fixture(scope="session")
def torch_mod(numba_threads):
    """torch with the same thread count as numba; the torch group is skipped without it."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(numba_threads)
    return torch
