"""Helpers shared by the benchmark modules: slow-backend batch, data, timing, CPU, torch layouts."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# benchmarks time numba's own kernels: on a cold cache they compile in the process (and the
# processes a script starts inherit this), never the prebuilt first run with a compile in the
# background beside the timing (fastcnn.kernels.tiered); startup_scaling.py sets its own
os.environ.setdefault("FASTCNN_COLD_START", "compile")

#: backends timed on a reduced batch and scaled per image in the report
SLOW_BACKENDS = {"better", "adhoc"}
SMALL_BATCH = 1

#: PyTorch's two memory formats: every torch row is timed in both, and compared at the faster
TORCH_LAYOUTS = ("nchw", "channels_last")
#: the benchmark parameter of a torch row: ``torch-<layout>`` (``split_backend`` parses it)
TORCH_BACKENDS = tuple(f"torch-{layout}" for layout in TORCH_LAYOUTS)


def split_backend(name: str) -> tuple[str, str | None]:
    """``"torch-nchw"`` -> ``("torch", "nchw")``; any fastcnn backend -> ``(name, None)``."""
    if name.startswith("torch-"):
        return "torch", name[len("torch-"):]
    return name, None


def cpu_description() -> str:
    """The CPU these figures come from: model name, logical CPUs usable here, AVX-512 and AVX2.

    Read from ``/proc/cpuinfo`` (Linux); elsewhere ``platform.processor()`` with the
    vector extensions unknown. Printed by every benchmark script and recorded in
    the pytest-benchmark JSON (``machine_info['fastcnn_cpu']``) for the report.
    """
    model, flags = "", None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and flags is None:
                    flags = set(value.split())
                if model and flags is not None:
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    if flags is None:
        return f"{model}, {cpus} CPUs, AVX2: ?, AVX-512: ?"
    yes = {True: "yes", False: "no"}
    return f"{model}, {cpus} CPUs, AVX2: {yes['avx2' in flags]}, AVX-512: {yes['avx512f' in flags]}"


def peer_threads() -> int:
    """Threads a peer library gets: numba's default (``NUMBA_NUM_THREADS``, else the usable cores).

    Reads the environment only, so a torch-only process need not import numba.
    """
    value = os.environ.get("NUMBA_NUM_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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


@contextlib.contextmanager
def revision_tree(rev: str):
    """A temporary git worktree of revision ``rev`` of this repository, removed afterwards (this
    tree is not touched; the worktree's numba cache starts empty)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "revision"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(path), rev],
                       check=True, capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)],
                           check=False, capture_output=True)
