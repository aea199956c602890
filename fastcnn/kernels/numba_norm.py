"""Batch normalization's per-channel work as numba kernels (the ``numba`` backend's
``bn_stats`` / ``bn_normalize`` / ``bn_backward``; meanings in ``fastcnn.kernels.norm``).

The three kernels are also in the ``numba-aot`` build (``aot.KERNELS``, ``aot.KERNEL_MODULES``),
and both backends call them through the same wrapper, ``norm.KernelNorm``: the same bits.

Determinism: the per-channel sums are cut into row chunks whose count depends only on
the row count (``norm.row_chunks``), never on the thread count. Each chunk (one prange task)
sums its rows into its own float64 row of partials, and the partials are then added in
chunk order: the same bits on any number of threads. Chunks of rows, not channels, are
the parallel unit because rows are contiguous in NHWC and channels are few (6-64 in the
presets): one task per channel would stride through the whole batch once per channel.
The elementwise passes (normalize, input gradient) run one row per task.

This module's kernels call no other kernel module, so numba's own per-file cache stamp
is right for them (``numba_cache`` stamps only the modules that share helpers).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numba_safety
from .norm import KernelNorm


@njit(parallel=True, cache=True)
def _bn_stats(x, nchunk, mean, var):
    """mean[j] = sum_r x[r, j] / n; var[j] = sum_r (x[r, j] - mean[j])**2 / n (float64)."""
    n, c = x.shape
    rows = (n + nchunk - 1) // nchunk
    part = np.zeros((nchunk, c))
    for t in prange(nchunk):
        for r in range(t * rows, min(n, (t + 1) * rows)):
            for j in range(c):
                part[t, j] += x[r, j]
    for j in range(c):
        s = 0.0
        for t in range(nchunk):
            s += part[t, j]
        mean[j] = s / n
    for t in prange(nchunk):
        for j in range(c):
            part[t, j] = 0.0
        for r in range(t * rows, min(n, (t + 1) * rows)):
            for j in range(c):
                d = x[r, j] - mean[j]
                part[t, j] += d * d
    for j in range(c):
        s = 0.0
        for t in range(nchunk):
            s += part[t, j]
        var[j] = s / n


@njit(parallel=True, cache=True)
def _bn_normalize(x, mean, inv, scale, shift, rescale, norm, y):
    """norm = (x - mean) * inv; y = norm * scale + shift when rescale (y unused otherwise)."""
    n, c = x.shape
    for r in prange(n):
        for j in range(c):
            v = (x[r, j] - mean[j]) * inv[j]
            norm[r, j] = v
            if rescale:
                y[r, j] = v * scale[j] + shift[j]


@njit(parallel=True, cache=True)
def _bn_backward(g, norm, inv, scale, exact, nchunk, g_x, sums):
    """sums[0] = sum_r g, sums[1] = sum_r g * norm (chunked, float64); then
    g_x = inv * (scale * g - a - norm * b), a = scale * sums[0] / n, b = scale * sums[1] / n
    when exact, else a = b = 0."""
    n, c = g.shape
    rows = (n + nchunk - 1) // nchunk
    part = np.zeros((nchunk, 2, c))
    for t in prange(nchunk):
        for r in range(t * rows, min(n, (t + 1) * rows)):
            for j in range(c):
                gv = np.float64(g[r, j])
                part[t, 0, j] += gv
                part[t, 1, j] += gv * norm[r, j]
    for j in range(c):
        s0 = 0.0
        s1 = 0.0
        for t in range(nchunk):
            s0 += part[t, 0, j]
            s1 += part[t, 1, j]
        sums[0, j] = s0
        sums[1, j] = s1
    a = np.zeros(c)
    b = np.zeros(c)
    if exact:
        for j in range(c):
            a[j] = scale[j] * sums[0, j] / n
            b[j] = scale[j] * sums[1, j] / n
    for r in prange(n):
        for j in range(c):
            g_x[r, j] = inv[j] * (scale[j] * g[r, j] - a[j] - norm[r, j] * b[j])


numba_safety.guard_caches(__package__)  # these kernels too: a damaged cache entry recompiles


# --------------------------------------------------------------------------
# the functions (``fastcnn.kernels.norm``'s names), around the kernels
# --------------------------------------------------------------------------


_HOST = KernelNorm(_bn_stats, _bn_normalize, _bn_backward)


def bn_stats(x2: np.ndarray):
    return _HOST.bn_stats(x2)


def bn_normalize(x2, mean, inv, scale, shift):
    return _HOST.bn_normalize(x2, mean, inv, scale, shift)


def bn_backward(g2, norm, inv, scale, exact: bool):
    return _HOST.bn_backward(g2, norm, inv, scale, exact)
