"""Max and average pooling, forward and backward (no padding: windows that do not fit
were dropped by the geometry)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_cache import share_cache_stamp

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)


# Each image is one flat 1-D array (x[n] has xh*xw*xc values, a row rowlen =
# xw*xc). Window element (ky, kx) of the window that starts at flat index i is
# at i + ky*rowlen + kx*xc, the same shift for every i. So one output row is
# reduced as a "flat" correlation: h[i] over every flat position i of the row
# where a window can start (i < L), one unit-stride pass per tap (ky, kx) in
# row-major order, each a SIMD loop over 1-D views (see the _tap_* helpers);
# then the outputs are picked from h at the window starts i = ox*sw*xc + c.
# Each pass writes into the other of two buffers (ping-pong) rather than
# updating h in place: an in-place select compiles to masked stores, 6x slower
# on AVX2 AMD cores (docs/benchmarks.md, "Masked stores").
# With stride 2 half of h is wasted, but SIMD makes that far cheaper than
# scalar per-pixel windows (measured: 4-5x for 2x2 max, see docs/benchmarks.md).
# Tasks are images (as elsewhere: a g_x image is owned by one thread, so
# overlapping windows never race); per-row tasks measured slower, mostly from
# allocating the row buffers per task.
# Average pooling keeps per-pixel loops with channels innermost: its windows are
# 3x3 with many channels, where the flat scheme (3x wasted columns) measured slower.


@njit(cache=True)
def _tap_max(dst, h, s):
    """dst = max(h, s) elementwise; s wins only if strictly greater (NaN in s never wins)."""
    for i in range(dst.shape[0]):
        a = h[i]
        v = s[i]
        dst[i] = v if v > a else a


@njit(cache=True)
def _tap_argmax(dst, dst_at, h, at, s, off):
    """As _tap_max, and dst_at = off where s won, else at: ties keep the first maximum."""
    o = np.int32(off)
    for i in range(dst.shape[0]):
        a = h[i]
        b = at[i]  # loaded on both paths, else LLVM emits a masked load
        v = s[i]
        win = v > a
        dst[i] = v if win else a
        dst_at[i] = o if win else b


@njit(parallel=True, cache=True)
def _max_fwd(x, kh, kw, sh, sw, y):
    """y[n, oy, ox, c] = max over the window at (oy*sh, ox*sw), scanned row-major.

    A later element replaces the running max only if strictly greater, so the
    result is NaN only when the window's first element is NaN.
    """
    mb, _, xw, xc = x.shape
    _, yh, yw, _ = y.shape
    rowlen = xw * xc
    span = ((yw - 1) * sw + 1) * xc  # flat positions where a window of the row starts
    for n in prange(mb):
        xn = x[n].reshape(-1)
        yn = y[n].reshape(-1)
        bufs = np.empty((2, span), x.dtype)
        for oy in range(yh):
            r0 = oy * sh * rowlen
            h = xn[r0 : r0 + span]  # tap (0, 0)
            t = 0
            for ky in range(kh):
                for kx in range(1 if ky == 0 else 0, kw):
                    d = r0 + ky * rowlen + kx * xc
                    dst = bufs[t % 2]
                    _tap_max(dst, h, xn[d : d + span])
                    h = dst
                    t += 1
            for ox in range(yw):
                a = ox * sw * xc
                j = (oy * yw + ox) * xc
                for c in range(xc):
                    yn[j + c] = h[a + c]


@njit(parallel=True, cache=True)
def _max_bwd(g_y, x, kh, kw, sh, sw, g_x):
    """Route g_y[n, oy, ox, c] to the first max (row-major in the window); overlaps add up."""
    mb, _, xw, xc = x.shape
    _, yh, yw, _ = g_y.shape
    rowlen = xw * xc
    span = ((yw - 1) * sw + 1) * xc
    for n in prange(mb):  # one image per task: overlapping windows never race
        xn = x[n].reshape(-1)
        gx = g_x[n].reshape(-1)
        gn = g_y[n].reshape(-1)
        gx[:] = 0
        bufs = np.empty((2, span), x.dtype)
        ats = np.zeros((3, span), np.int32)  # offset of the first max from the window start
        for oy in range(yh):
            r0 = oy * sh * rowlen
            h = xn[r0 : r0 + span]  # tap (0, 0), offset 0 (ats[2] stays zero)
            at = ats[2]
            t = 0
            for ky in range(kh):
                for kx in range(1 if ky == 0 else 0, kw):
                    off = ky * rowlen + kx * xc
                    dst, dst_at = bufs[t % 2], ats[t % 2]
                    _tap_argmax(dst, dst_at, h, at, xn[r0 + off : r0 + off + span], off)
                    h, at = dst, dst_at
                    t += 1
            for ox in range(yw):
                a = ox * sw * xc
                j = (oy * yw + ox) * xc
                for c in range(xc):
                    gx[r0 + a + c + at[a + c]] += gn[j + c]


@njit(parallel=True, cache=True)
def _avg_fwd(x, kh, kw, sh, sw, y):
    """y[n, oy, ox, c] = mean over the window at (oy*sh, ox*sw)."""
    mb, _, _, xc = x.shape
    _, yh, yw, _ = y.shape
    scale = 1.0 / (kh * kw)
    for t in prange(mb * yh):
        n = t // yh
        oy = t % yh
        for ox in range(yw):
            iy0 = oy * sh
            ix0 = ox * sw
            out = y[n, oy, ox]
            out[:] = 0
            for ky in range(kh):
                for kx in range(kw):
                    src = x[n, iy0 + ky, ix0 + kx]
                    for c in range(xc):
                        out[c] += src[c]
            for c in range(xc):
                out[c] = out[c] * scale


@njit(parallel=True, cache=True)
def _avg_bwd(g_y, kh, kw, sh, sw, g_x):
    """g_x[n, iy, ix, c] = sum over windows holding (iy, ix) of g_y / (kh*kw)."""
    mb, _, _, xc = g_x.shape
    _, yh, yw, _ = g_y.shape
    scale = 1.0 / (kh * kw)
    for n in prange(mb):  # one image per task: overlapping windows never race
        g_x[n] = 0
        for oy in range(yh):
            for ox in range(yw):
                g = g_y[n, oy, ox]
                for ky in range(kh):
                    for kx in range(kw):
                        dst = g_x[n, oy * sh + ky, ox * sw + kx]
                        for c in range(xc):
                            dst[c] += g[c] * scale
