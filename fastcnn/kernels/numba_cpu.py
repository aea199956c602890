"""The ``numba`` backend: the kernels of ``numba_kernels``, JIT-compiled and cached on disk.

The first call of each kernel compiles it (about a minute for all of them on a
cold cache); later processes load the machine code from numba's cache. The
kernels run on numba's threads (``NUMBA_NUM_THREADS``, default: every core).
The contract functions come from ``numba_host.NumbaHost``, shared with the
``numba-aot`` backend.
"""

from __future__ import annotations

from . import numba_kernels
from .numba_host import NumbaHost

num_threads = numba_kernels.num_threads

_HOST = NumbaHost(numba_kernels, wide=numba_kernels._WIDE, threads=num_threads)

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
