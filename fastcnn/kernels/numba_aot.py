"""The ``numba-aot`` backend: the numba kernels compiled ahead of time, no JIT in the process.

The same functions as the ``numba`` backend (``numba_kernels``), compiled by
``python -m fastcnn.kernels.aot_build`` into an extension module that needs only
NumPy: importing this backend loads neither numba nor LLVM, nothing compiles at
run time, and a training process stays smaller than with the NumPy backend
(docs/performance.md). pycc's exports have no ``parallel=True``, so the kernels
run on one thread; they compute the same bits as the ``numba`` backend on any
thread count. Importing raises ImportError, saying how to build it, when the
module is missing, stale or built for another CPU.
"""

from __future__ import annotations

from . import aot
from .numba_host import NumbaHost

_KERNELS = aot.load()


def num_threads() -> int:
    """Threads the kernels run on: one (pycc builds no parallel loops)."""
    return 1


_HOST = NumbaHost(_KERNELS, wide=_KERNELS.wide, threads=num_threads)

conv2d_forward = _HOST.conv2d_forward
conv2d_backward = _HOST.conv2d_backward
max_pool_forward = _HOST.max_pool_forward
max_pool_backward = _HOST.max_pool_backward
avg_pool_forward = _HOST.avg_pool_forward
avg_pool_backward = _HOST.avg_pool_backward
ext_regions = _HOST.ext_regions
undo_ext_regions = _HOST.undo_ext_regions
relu_forward = _HOST.relu_forward
relu_backward = _HOST.relu_backward
adam_update = _HOST.adam_update
matmul = _HOST.matmul
