"""Dropout and noise in one parallel pass each: counter-based random numbers (``masks``).

Element ``i`` of a call gets its uniform number from ``(key, i)`` alone (splitmix64's mix),
so the threads split the elements in fixed blocks and every mask is the same on any
thread count; the numbers equal ``masks.uniforms`` bit for bit. The arithmetic runs in
float64 and is stored in the arrays' dtype, as ``masks``' NumPy functions do. The
contract functions at the bottom are the ``numba`` backend's (``masks.bind_masks``).

The span helpers (``_drop_span`` / ``_drop_in_place``, ``_noise_span``, ``_kept_grad``: a run
of elements whose first counter is ``base``) are the whole arithmetic: the one-pass kernels here call them per
block, and the fused conv + pooling kernels (``numba_fused``) per image, on the pooled output
as they write it (``_apply_draw``), so both give the same bits. That makes this file one of
the fused kernels' sources: it shares their cache stamp (``numba_cache``).

``_relu_draw_fwd`` / ``_relu_drop_bwd`` fuse a ReLU with the dropout or noise right after it
(``fastcnn.steps.ReluMaskStep``): per block, the ReLU of ``numba_elementwise._relu`` then
``_apply_draw``; back, dropout's and ReLU's backward in one expression. Their bits are those
of the kernels one by one (see ``_kept_relu_grad``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numba_safety
from .masks import DROPOUT, NOISE, KernelMasks
from .numba_cache import share_cache_stamp

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_UNIT = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * np.pi
#: elements per parallel task (a fixed cut: tasks never share an output element)
_BLOCK = 4096


@njit(cache=True)
def _uniform(key, i):
    """Element i's uniform number in [0, 1) for ``key`` (uint64): masks.uniforms."""
    z = key + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _UNIT


@njit(cache=True)
def _drop_span(x, base, key, keep, scale, y, mask):
    """Flat spans, element j with counter base + j: mask[j] = uniform < keep; y[j] = x[j] * scale
    there, else 0 (y another array than x: see _drop_in_place)."""
    for j in range(x.shape[0]):
        kept = _uniform(key, base + j) < keep  # one store each, no branch: LLVM vectorizes the loop
        mask[j] = kept  # (stores in an if / else measured 4x slower)
        y[j] = x[j] * scale if kept else 0.0


@njit(cache=True)
def _drop_in_place(v, base, key, keep, scale, mask):
    """_drop_span with y = x = v. Its own loop: _drop_span(v, ..., v, mask) fails LLVM's run-time
    overlap check of x and y and runs the scalar loop, 6x slower (0.65 against 0.1 ms on
    10x48x48x6)."""
    for j in range(v.shape[0]):
        kept = _uniform(key, base + j) < keep
        mask[j] = kept
        v[j] = v[j] * scale if kept else 0.0


@njit(cache=True)
def _kept_grad(g, mask, scale, out):
    """Flat spans: out[j] = g[j] * scale where mask[j], else 0 (dropout's backward)."""
    for j in range(g.shape[0]):
        out[j] = g[j] * scale if mask[j] != 0 else 0


@njit(cache=True)
def _box_muller(key, i):
    """(r, t) of the uniform pair (i, i + 1), i even: element i's normal is r cos t, i + 1's r sin t."""
    return np.sqrt(-2.0 * np.log(1.0 - _uniform(key, i))), _TWO_PI * _uniform(key, i + 1)


@njit(cache=True)
def _noise_span(x, base, key, mean, std, y):
    """Flat spans, element j with counter base + j: y[j] = x[j] + (mean + std * z), z from Box-Muller
    on the pairs (2m, 2m + 1) of the counters (masks.normals); a span may start or end inside a
    pair, whose other half is then not stored (y may be x). One copy of the math: smaller code."""
    n = x.shape[0]
    for c in range(base - base % 2, base + n, 2):
        r, t = _box_muller(key, c)
        j = c - base
        if j >= 0:
            y[j] = x[j] + (mean + std * (r * np.cos(t)))
        if j + 1 < n:
            y[j + 1] = x[j + 1] + (mean + std * (r * np.sin(t)))


@njit(cache=True)
def _apply_draw(v, base, mode, key, p1, p2, mask):
    """v (flat, counters base + j) in place: dropout (``mode`` DROPOUT, p1 keep, p2 1 / keep; mask
    written) or noise (NOISE, p1 mean, p2 std); any other mode leaves v as it is."""
    k = np.uint64(key)
    if mode == DROPOUT:
        _drop_in_place(v, base, k, p1, p2, mask)
    elif mode == NOISE:
        _noise_span(v, base, k, p1, p2, v)


@njit(cache=True)
def _relu_span(a, y):
    """Flat spans: y[j] = max(a[j], 0), the expression of numba_elementwise._relu (NaN stays NaN)."""
    for j in range(a.shape[0]):
        x = a[j]
        y[j] = x if not x < 0 else 0


@njit(cache=True)
def _kept_relu_grad(g, mask, scale, a, out):
    """Flat spans: out[j] = (g[j] * scale where mask[j], else 0) where a[j] > 0, else 0: dropout's
    backward (_kept_grad), then ReLU's (numba_elementwise._relu_backward) on the ReLU output y.
    The same bits: y > 0 exactly where a > 0 (ReLU is exact, NaN fails both), and rounding the
    product to the dtype before or after choosing it or 0 gives the same value."""
    for j in range(g.shape[0]):
        v = g[j]  # loaded on both paths, else LLVM emits a masked load
        kept = v * scale if mask[j] != 0 else 0
        out[j] = kept if a[j] > 0 else 0


@njit(parallel=True, cache=True)
def _relu_draw_fwd(a, mode, key, n0, p1, p2, y, mask):
    """Flat arrays, element i with counter n0 + i: y = ReLU(a), then the draw on y (``_apply_draw``:
    mode DROPOUT, p1 keep, p2 1 / keep, mask written; NOISE, p1 mean, p2 std; a and y two arrays).
    Each block's ReLU is still in cache when its draw runs: one pass over memory."""
    n = a.shape[0]
    span = 2 * _BLOCK  # even: a block of a whole call starts a Box-Muller pair
    for b in prange((n + span - 1) // span):
        lo, hi = b * span, min(n, (b + 1) * span)
        _relu_span(a[lo:hi], y[lo:hi])
        _apply_draw(y[lo:hi], n0 + lo, mode, key, p1, p2, mask[lo:hi])


@njit(parallel=True, cache=True)
def _relu_drop_bwd(g, mask, scale, a, out):
    """Flat arrays: out[i] = g[i] * scale where mask[i] and a[i] > 0, else 0 (_kept_relu_grad)."""
    n = g.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _kept_relu_grad(g[lo:hi], mask[lo:hi], scale, a[lo:hi], out[lo:hi])


@njit(parallel=True, cache=True)
def _dropout_fwd(x, key, scale, keep, y, mask):
    """Flat arrays: mask[i] = uniform(key, i) < keep; y[i] = x[i] * scale there, else 0."""
    n = x.shape[0]
    k = np.uint64(key)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _drop_span(x[lo:hi], lo, k, keep, scale, y[lo:hi], mask[lo:hi])


@njit(parallel=True, cache=True)
def _dropout_bwd(g, mask, scale, out):
    """Flat arrays: out[i] = g[i] * scale where mask[i], else 0."""
    n = g.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _kept_grad(g[lo:hi], mask[lo:hi], scale, out[lo:hi])


@njit(parallel=True, cache=True)
def _add_noise(x, key, mean, std, y):
    """Flat arrays: y[i] = x[i] + (mean + std * z_i), z from Box-Muller on the uniform pairs
    (2j, 2j + 1): cos for element 2j, sin for 2j + 1 (masks.normals)."""
    n = x.shape[0]
    k = np.uint64(key)
    span = 2 * _BLOCK  # even: every block starts a pair
    for b in prange((n + span - 1) // span):
        lo, hi = b * span, min(n, (b + 1) * span)
        _noise_span(x[lo:hi], lo, k, mean, std, y[lo:hi])


numba_safety.guard_caches(__package__)  # these kernels too: a damaged cache entry recompiles

_HOST = KernelMasks(_dropout_fwd, _dropout_bwd, _add_noise, _relu_draw_fwd, _relu_drop_bwd)


#: the contract functions (``masks.MASK_FUNCTIONS``), and the fused ones (``masks.FUSED_MASK_FUNCTIONS``)
dropout_forward = _HOST.dropout_forward
dropout_backward = _HOST.dropout_backward
add_noise = _HOST.add_noise
relu_draw_forward = _HOST.relu_draw_forward
relu_drop_backward = _HOST.relu_drop_backward
