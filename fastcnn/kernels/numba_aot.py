"""The ``numba-aot`` backend: the numba kernels compiled ahead of time, no JIT in the process.

The same functions as the ``numba`` backend (``numba_kernels``), compiled by
``python -m fastcnn.kernels.aot_build`` into an extension module that needs only
NumPy: importing this backend loads neither numba nor LLVM, nothing compiles at
run time, and a training process stays smaller than with the NumPy backend
(docs/performance.md). pycc builds no parallel loops: each kernel call is cut
along its batch over ``fastcnn.runtime.num_threads()`` threads instead
(``fastcnn.kernels.aot``).
Results are the same bits as the ``numba`` backend's, on any thread count.
Importing raises ImportError, saying how to build it, when the module is
missing, stale or built for another CPU.
"""

from __future__ import annotations

from ..runtime import num_threads  # the cut count, set by fastcnn.runtime.set_num_threads
from . import aot
from .numba_host import NumbaHost

_KERNELS = aot.load(num_threads)
#: the backend: the contract functions are its methods (``NumbaHost``)
BACKEND = NumbaHost(_KERNELS, wide=_KERNELS.wide, threads=num_threads)
