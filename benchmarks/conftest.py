"""Shared fixtures of the kernel benchmarks: workloads, thread counts, a timing helper.

Benchmarks are collected only with ``pytest --benchmark`` (see the root conftest).
Workloads and the timing helper live in ``test_bench_kernels.py``.
"""

from __future__ import annotations

import pytest
from bench_common import cpu_description


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU line (model, AVX2, AVX-512) every report and script prints."""
    machine_info["fastcnn_cpu"] = cpu_description()


@pytest.fixture(scope="session", autouse=True)
def process_policy():
    """The benchmarks time what training runs: with ``fastcnn.runtime``'s process policy
    applied (the allocator setting saves a page fault per 4 KiB per step; docs/runtime.md)."""
    from fastcnn import runtime

    return runtime.apply_policy()


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
