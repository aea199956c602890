"""Memory-bound passes: ReLU and Adam (one fused parallel pass each), and the im2col gathers.

``_ext_regions`` / ``_undo_ext_regions`` are im2col / col2im for the strided
convolutions (``NumbaHost`` multiplies the columns with one sgemm) and the
``ext_regions`` / ``undo_ext_regions`` contract functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_cache import share_cache_stamp

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)


# --------------------------------------------------------------------------
# elementwise steps around the kernels: one fused parallel pass each
# --------------------------------------------------------------------------


# Elementwise results go to a different array than their inputs: LLVM compiles
# an in-place conditional update (``v[i] = 0 if v[i] < 0 else v[i]``) to masked
# stores, which AVX2 AMD cores microcode: measured 0.54 ns/element against
# 0.07 out of place (docs/benchmarks.md, "Masked stores").


@njit(parallel=True, cache=True)
def _relu(v, out):
    for i in prange(v.size):
        x = v[i]
        out[i] = x if not x < 0 else 0  # NaN stays NaN, as with np.maximum


@njit(parallel=True, cache=True)
def _relu_backward(g, y, out):
    for i in prange(g.size):
        v = g[i]  # loaded on both paths, else LLVM emits a masked load
        out[i] = v if y[i] > 0 else 0


#: parameters up to this many elements update on the calling thread: starting the parallel
#: loop costs about 2 us, more than the whole update of a bias or a small kernel (AMD Zen 5:
#: 5-162 elements 0.4-0.8 us serial against 2.0-2.3 parallel; 648 level; 1,024 and up faster
#: in parallel)
_ADAM_SERIAL = 512


@njit(parallel=True, cache=True)
def _adam(p, g, m, v, lr_t, beta1, beta2, eps):
    c1 = 1 - beta1
    c2 = 1 - beta2
    # The body is written twice on purpose: one helper for both loops (spans of 512 elements
    # per task) ran 12.3 against 5.9 us for 7,680 elements: LLVM vectorises the prange body
    # but not a serial loop that stores into three arrays and reads a fourth.
    if p.size <= _ADAM_SERIAL:  # the same expression, element by element: the same bits
        for i in range(p.size):
            gi = g[i]
            mi = beta1 * m[i] + c1 * gi
            vi = beta2 * v[i] + c2 * (gi * gi)
            m[i] = mi
            v[i] = vi
            p[i] -= lr_t * mi / (np.sqrt(vi) + eps)
        return
    for i in prange(p.size):
        gi = g[i]
        mi = beta1 * m[i] + c1 * gi
        vi = beta2 * v[i] + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


# --------------------------------------------------------------------------
# im2col / col2im (strided convolutions)
# --------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _ext_regions(x, kh, kw, sh, sw, pt, pl, yh, yw, cols):
    """cols[(n*yh + oy)*yw + ox, (ky*kw + kx)*xc + ci] = x_pad[n, oy*sh+ky, ox*sw+kx, ci]."""
    mb, xh, xw, xc = x.shape
    for t in prange(mb * yh):  # one task per output row: rows of cols never overlap
        n = t // yh
        oy = t % yh
        for ox in range(yw):
            r = t * yw + ox
            for ky in range(kh):
                iy = oy * sh + ky - pt  # row in the unpadded input
                for kx in range(kw):
                    ix = ox * sw + kx - pl
                    c0 = (ky * kw + kx) * xc
                    if 0 <= iy < xh and 0 <= ix < xw:
                        for ci in range(xc):
                            cols[r, c0 + ci] = x[n, iy, ix, ci]
                    else:
                        for ci in range(xc):
                            cols[r, c0 + ci] = 0


@njit(parallel=True, cache=True)
def _undo_ext_regions(cols, kh, kw, sh, sw, pt, pl, yh, yw, g_x):
    """Adjoint of _ext_regions: add each row of cols onto its window; one image per task."""
    mb, xh, xw, xc = g_x.shape
    for n in prange(mb):  # overlapping windows stay inside one image -> one owner per output
        g_x[n] = 0
        for oy in range(yh):
            for ox in range(yw):
                r = (n * yh + oy) * yw + ox
                for ky in range(kh):
                    iy = oy * sh + ky - pt
                    if iy < 0 or iy >= xh:
                        continue  # padding row: cropped
                    for kx in range(kw):
                        ix = ox * sw + kx - pl
                        if ix < 0 or ix >= xw:
                            continue
                        c0 = (ky * kw + kx) * xc
                        for ci in range(xc):
                            g_x[n, iy, ix, ci] += cols[r, c0 + ci]
