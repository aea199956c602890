"""The ``numba-aot`` backend: the numba kernels compiled ahead of time, no JIT in the process.

The same functions as the ``numba`` backend (``numba_kernels``), compiled by
``python -m fastcnn.kernels.aot_build`` into an extension module that needs only
NumPy: importing this backend loads neither numba nor LLVM, nothing compiles at
run time, and a training process stays smaller than with the NumPy backend
(docs/performance.md). pycc builds no parallel loops: each kernel call is cut
along its batch over ``num_threads()`` threads instead (``fastcnn.kernels.aot``).
Results are the same bits as the ``numba`` backend's, on any thread count.
Importing raises ImportError, saying how to build it, when the module is
missing, stale or built for another CPU.
"""

from __future__ import annotations

import os

from . import aot
from .numba_host import NumbaHost


def _default_threads() -> int:
    """``NUMBA_NUM_THREADS`` if set (as for the JIT backend), else every core."""
    value = os.environ.get("NUMBA_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


_threads = _default_threads()


def num_threads() -> int:
    """Threads each kernel call is cut over (``set_num_threads`` changes it)."""
    return _threads


def set_num_threads(n: int) -> None:
    """Cut kernel calls over ``n`` threads (1: run them whole); results are the same bits for any n."""
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"numba-aot threads must be an int >= 1, got {n!r}")
    _threads = n


_KERNELS = aot.load(num_threads)
_HOST = NumbaHost(_KERNELS, wide=_KERNELS.wide, threads=num_threads)

globals().update(_HOST.contract())  # conv2d_forward, ..., matmul: the kernel contract
