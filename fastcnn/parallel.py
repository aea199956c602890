"""Who owns the cores: numba's workers or the BLAS library's, never both at once.

On the numba backend the compiled kernels already split work across all
cores. If OpenBLAS also starts its own threads for the matmuls in between
(dense layers, stride > 1 convs), the two pools oversubscribe the machine and
spin against each other: measured on 2 cores, a 100x4320 @ 4320x100 sgemm took
73 ms with BLAS threads versus 1.0 ms single-threaded. Single-threaded BLAS
also makes results independent of the BLAS thread count.
"""

from __future__ import annotations

import contextlib

_controller = None


def single_threaded_blas():
    """Context manager limiting BLAS to one thread (about 12 us to enter and leave)."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it BLAS keeps its own threads
            return contextlib.nullcontext()
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
