"""Batch normalization's per-channel work as numba kernels (the ``numba`` backend's
``bn_stats`` / ``bn_normalize`` / ``bn_backward``; meanings in ``fastcnn.kernels.norm``).

Determinism: the per-channel sums are cut into row chunks whose count depends only on
the row count (``_chunks``), never on the thread count. Each chunk (one prange task)
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

#: rows per chunk of the per-channel sums (the last chunk may be shorter)
CHUNK_ROWS = 512
#: at most this many chunks (partials: MAX_CHUNKS x chn float64)
MAX_CHUNKS = 256


def _chunks(n: int) -> int:
    """How many row chunks the sums of ``n`` rows use: a function of ``n`` alone."""
    return max(1, min(MAX_CHUNKS, -(-n // CHUNK_ROWS)))


@njit(parallel=True, cache=True)
def _stats(x, nchunk, mean, var):
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
def _normalize(x, mean, inv, scale, shift, rescale, norm, y):
    """norm = (x - mean) * inv; y = norm * scale + shift when rescale (y unused otherwise)."""
    n, c = x.shape
    for r in prange(n):
        for j in range(c):
            v = (x[r, j] - mean[j]) * inv[j]
            norm[r, j] = v
            if rescale:
                y[r, j] = v * scale[j] + shift[j]


@njit(parallel=True, cache=True)
def _backward(g, norm, inv, scale, exact, nchunk, g_x, sums):
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


def bn_stats(x2: np.ndarray):
    c = x2.shape[1]
    mean = np.empty(c)
    var = np.empty(c)
    _stats(x2, _chunks(x2.shape[0]), mean, var)
    return mean, var


def bn_normalize(x2, mean, inv, scale, shift):
    norm = np.empty_like(x2)
    rescale = scale is not None
    y = np.empty_like(x2) if rescale else norm
    if not rescale:  # typed placeholders: the kernel never reads them
        scale = shift = np.empty(0, x2.dtype)
    _normalize(x2, np.ascontiguousarray(mean, np.float64), np.ascontiguousarray(inv, np.float64),
               scale, shift, rescale, norm, y)
    return norm, y


def bn_backward(g2, norm, inv, scale, exact: bool):
    g2 = np.ascontiguousarray(g2, norm.dtype)
    c = g2.shape[1]
    g_x = np.empty_like(g2)
    sums = np.empty((2, c))
    s = np.ones(c) if scale is None else scale.astype(np.float64)
    inv = np.ascontiguousarray(inv, np.float64)
    _backward(g2, norm, inv, s, bool(exact), _chunks(g2.shape[0]), g_x, sums)
    if scale is None:
        return g_x, None, None
    return g_x, sums[1].astype(g2.dtype), sums[0].astype(g2.dtype)
