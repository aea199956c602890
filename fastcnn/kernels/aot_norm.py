"""The ``numba-aot`` backend's batch-norm functions: ``numba_norm``'s kernels as built ahead of
time (``aot.KERNELS``), called through the same ``norm.KernelNorm`` as the ``numba`` backend's,
so the two give the same bits. Loads no numba: only the built extension module.

``_bn_normalize`` is cut along its rows over the worker threads (``aot.KERNELS``' split);
the two kernels with per-channel sums run whole, in one thread, as their chunked sums
need no cut to be deterministic.
"""

from __future__ import annotations

from .norm import KernelNorm
from .numba_aot import _KERNELS

_HOST = KernelNorm(_KERNELS._bn_stats, _KERNELS._bn_normalize, _KERNELS._bn_backward)


def bn_stats(x2):
    return _HOST.bn_stats(x2)


def bn_normalize(x2, mean, inv, scale, shift):
    return _HOST.bn_normalize(x2, mean, inv, scale, shift)


def bn_backward(g2, norm, inv, scale, exact: bool):
    return _HOST.bn_backward(g2, norm, inv, scale, exact)
