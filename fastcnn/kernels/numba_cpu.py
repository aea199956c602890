"""The ``numba`` backend: the kernels of ``numba_kernels``, JIT-compiled and cached on disk.

The first call of each kernel compiles it (a minute and a half for all of them on a
cold cache); later processes load the machine code from numba's cache. On a cold cache
with the prebuilt build there (``make aot``), the backend runs that build while a child
process compiles numba's kernels (``tiered``: same results, no wait). The
kernels run on numba's threads (``NUMBA_NUM_THREADS``, default: every core).
The contract functions come from ``numba_host.NumbaHost``, shared with the
``numba-aot`` backend.
"""

from __future__ import annotations

from .. import runtime
from . import numba_kernels, numba_safety, tiered
from .numba_host import NumbaHost

numba_safety.load_tbb()  # fork-safe threads: numba picks TBB when its pool starts
numba_safety.guard_caches(__package__)  # a damaged cache entry recompiles instead of failing

num_threads = runtime.num_threads  # one count for every backend (numba's own: runtime syncs it)

#: the backend: the contract functions are its methods (``NumbaHost``)
BACKEND = NumbaHost(numba_kernels, wide=numba_kernels._WIDE, threads=num_threads)
#: on a cold cache, the prebuilt kernels until numba's are compiled (None when warm or off)
TIERS = tiered.install(BACKEND, numba_kernels, num_threads)
