"""The ``numba`` backend: every kernel is an ``@njit(parallel=True, cache=True)`` loop nest.

Layout in memory is NHWC, as the contract says, but the conv kernels work on
one image at a time in a *planar* copy (``[chn, h, w]``, zero padded): then a
kernel tap ``(ky, kx, ci)`` times one output row is a unit-stride AXPY over the
output columns, which LLVM turns into SIMD code whatever the channel counts
are (the seed's layers have 1-30 channels, too few to vectorize over).
No im2col matrix is built for the conv: the planar image of one sample stays in
L1/L2 while all its taps run, so memory traffic is about the size of x and y.

Threads split the batch (``prange`` over images, or over image rows where no
reduction crosses rows). Every thread owns its outputs: col2im and the conv's
``g_x`` scatter inside one image, ``g_k``/``g_b`` are per-image partials summed
in a fixed order afterwards, so results do not depend on scheduling.

This is the only module that imports numba (its on-disk cache keys on this
file alone). Arguments arrive validated and C-contiguous from
``fastcnn.kernels``; the kernels assume valid input.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .shapes import ConvGeometry, PoolGeometry

# reassoc lets LLVM vectorize the dot-product reductions of g_k; contract allows FMA.
# No nnan/ninf: NaN and inf propagate as in NumPy.
_FAST = {"reassoc", "contract"}


# --------------------------------------------------------------------------
# helpers: NHWC image <-> planar padded image
# --------------------------------------------------------------------------


@njit(cache=True)
def _to_planar(src, n, pt, pl, dst):
    """Copy image ``n`` of ``src [mb, h, w, c]`` into ``dst [c, hp, wp]`` at offset (pt, pl).

    ``dst`` covers only the padded rows/columns that some window reads, so rows
    of ``src`` that fall beyond it are skipped; the rest of ``dst`` is zeroed.
    """
    _, h, w, c = src.shape
    _, hp, wp = dst.shape
    dst[:] = 0
    for r in range(h):
        rp = r + pt  # row in the padded frame
        if rp >= hp:
            break
        for col in range(w):
            cp = col + pl
            if cp >= wp:
                break
            for ch in range(c):
                dst[ch, rp, cp] = src[n, r, col, ch]


@njit(cache=True)
def _from_planar(src, pt, pl, dst, n):
    """Crop ``src [c, hp, wp]`` at (pt, pl) into image ``n`` of ``dst [mb, h, w, c]`` (zeros outside)."""
    _, h, w, c = dst.shape
    _, hp, wp = src.shape
    for r in range(h):
        rp = r + pt
        for col in range(w):
            cp = col + pl
            if rp < hp and cp < wp:
                for ch in range(c):
                    dst[n, r, col, ch] = src[ch, rp, cp]
            else:
                for ch in range(c):
                    dst[n, r, col, ch] = 0


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_fwd(x, k, b, sh, sw, pt, pl, y):
    """y[n, oy, ox, co] = b[co] + sum x_pad[n, oy*sh+ky, ox*sw+kx, ci] * k[ky, kx, ci, co]."""
    mb, _, _, xc = x.shape
    kh, kw, _, yc = k.shape
    _, yh, yw, _ = y.shape
    hp = (yh - 1) * sh + kh  # padded extent that the windows actually read
    wp = (yw - 1) * sw + kw
    for n in prange(mb):
        xp = np.empty((xc, hp, wp), x.dtype)
        _to_planar(x, n, pt, pl, xp)
        acc = np.empty((yc, yw), y.dtype)  # one output row, channel-major
        for oy in range(yh):
            for co in range(yc):
                arow = acc[co]
                bv = b[co]
                for ox in range(yw):
                    arow[ox] = bv
                for ky in range(kh):
                    iy = oy * sh + ky
                    for ci in range(xc):
                        xrow = xp[ci, iy]
                        for kx in range(kw):
                            wv = k[ky, kx, ci, co]
                            if sw == 1:
                                for ox in range(yw):
                                    arow[ox] += wv * xrow[ox + kx]
                            else:
                                for ox in range(yw):
                                    arow[ox] += wv * xrow[ox * sw + kx]
            for ox in range(yw):
                for co in range(yc):
                    y[n, oy, ox, co] = acc[co, ox]


@njit(parallel=True, cache=True, fastmath=_FAST)
def _conv_bwd(g_y, x, k, sh, sw, pt, pl, g_x, gk_part, gb_part):
    """Per image n: g_x[n] (scatter of g_y through k), and partial g_k/g_b sums in gk_part[n], gb_part[n].

    g_k[ky, kx, ci, co] = sum_n,oy,ox x_pad[n, oy*sh+ky, ox*sw+kx, ci] * g_y[n, oy, ox, co]
    g_x_pad[n, oy*sh+ky, ox*sw+kx, ci] += g_y[n, oy, ox, co] * k[ky, kx, ci, co]
    """
    mb, _, _, xc = x.shape
    kh, kw, _, yc = k.shape
    _, yh, yw, _ = g_y.shape
    hp = (yh - 1) * sh + kh
    wp = (yw - 1) * sw + kw
    for n in prange(mb):
        xp = np.empty((xc, hp, wp), x.dtype)
        _to_planar(x, n, pt, pl, xp)
        gt = np.empty((yc, yh, yw), x.dtype)
        _to_planar(g_y, n, 0, 0, gt)
        gxp = np.zeros((xc, hp, wp), x.dtype)
        zero = gxp[0, 0, 0]  # 0 in the dtype of x: keeps float32 sums in float32
        # g_b: sum of the output gradient over the pixels of this image
        for co in range(yc):
            s = zero
            for oy in range(yh):
                for ox in range(yw):
                    s += gt[co, oy, ox]
            gb_part[n, co] = s
        # g_k: one dot product over (oy, ox) per tap and output channel
        for ky in range(kh):
            for kx in range(kw):
                for ci in range(xc):
                    for co in range(yc):
                        s = zero
                        for oy in range(yh):
                            xrow = xp[ci, oy * sh + ky]
                            grow = gt[co, oy]
                            if sw == 1:
                                for ox in range(yw):
                                    s += xrow[ox + kx] * grow[ox]
                            else:
                                for ox in range(yw):
                                    s += xrow[ox * sw + kx] * grow[ox]
                        gk_part[n, ky, kx, ci, co] = s
        # g_x: every output pixel adds its gradient, weighted by k, onto its window
        for oy in range(yh):
            for co in range(yc):
                grow = gt[co, oy]
                for ky in range(kh):
                    iy = oy * sh + ky
                    for ci in range(xc):
                        xrow = gxp[ci, iy]
                        for kx in range(kw):
                            wv = k[ky, kx, ci, co]
                            if sw == 1:
                                for ox in range(yw):
                                    xrow[ox + kx] += wv * grow[ox]
                            else:
                                for ox in range(yw):
                                    xrow[ox * sw + kx] += wv * grow[ox]
        _from_planar(gxp, pt, pl, g_x, n)


def conv2d_forward(x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn]."""
    y = np.empty((x.shape[0], geo.yh, geo.yw, k.shape[3]), x.dtype)
    _conv_fwd(x, k, b, geo.sh, geo.sw, geo.pads[0], geo.pads[2], y)
    return y


def conv2d_backward(g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry):
    """g_y [mb, yh, yw, ychn] -> (g_x like x, g_k like k, g_b [ychn])."""
    mb = x.shape[0]
    g_x = np.empty_like(x)
    gk_part = np.empty((mb,) + k.shape, x.dtype)
    gb_part = np.empty((mb, k.shape[3]), x.dtype)
    _conv_bwd(g_y, x, k, geo.sh, geo.sw, geo.pads[0], geo.pads[2], g_x, gk_part, gb_part)
    # fixed-order sums over the batch: the same bits whatever the thread schedule
    return g_x, _sum_batch(gk_part.reshape(mb, -1)).reshape(k.shape), _sum_batch(gb_part)


@njit(cache=True)
def _sum_batch(part):
    """part [mb, m] -> [m], adding images in order 0, 1, ... (deterministic)."""
    out = part[0].copy()
    for n in range(1, part.shape[0]):
        for j in range(part.shape[1]):
            out[j] += part[n, j]
    return out


# --------------------------------------------------------------------------
# im2col / col2im
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


def ext_regions(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """x [mb, xh, xw, xchn] -> cols [mb*yh*yw, kh*kw*xchn] (rows: n, oy, ox; columns: ky, kx, ci)."""
    mb, _, _, xc = x.shape
    cols = np.empty((mb * geo.yh * geo.yw, geo.kh * geo.kw * xc), x.dtype)
    _ext_regions(x, geo.kh, geo.kw, geo.sh, geo.sw, geo.pads[0], geo.pads[2], geo.yh, geo.yw, cols)
    return cols


def undo_ext_regions(cols: np.ndarray, x_shape, geo: ConvGeometry) -> np.ndarray:
    """cols [mb*yh*yw, kh*kw*xchn] -> g_x [mb, xh, xw, xchn], padding cropped."""
    g_x = np.empty(tuple(x_shape), cols.dtype)
    _undo_ext_regions(cols, geo.kh, geo.kw, geo.sh, geo.sw, geo.pads[0], geo.pads[2], geo.yh, geo.yw, g_x)
    return g_x


# --------------------------------------------------------------------------
# pooling (no padding; windows that do not fit were dropped by the geometry)
# --------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _max_fwd(x, kh, kw, sh, sw, y):
    """y[n, oy, ox, c] = max over the window at (oy*sh, ox*sw); channels innermost (SIMD)."""
    mb, _, _, xc = x.shape
    _, yh, yw, _ = y.shape
    for t in prange(mb * yh):
        n = t // yh
        oy = t % yh
        for ox in range(yw):
            iy0 = oy * sh
            ix0 = ox * sw
            out = y[n, oy, ox]
            for c in range(xc):
                out[c] = x[n, iy0, ix0, c]
            for ky in range(kh):
                for kx in range(kw):
                    src = x[n, iy0 + ky, ix0 + kx]
                    for c in range(xc):
                        v = src[c]
                        if v > out[c]:
                            out[c] = v


@njit(parallel=True, cache=True)
def _max_bwd(g_y, x, kh, kw, sh, sw, g_x):
    """Route g_y[n, oy, ox, c] to the first max (row-major in the window); overlaps add up."""
    mb, _, _, xc = x.shape
    _, yh, yw, _ = g_y.shape
    for n in prange(mb):  # one image per task: overlapping windows never race
        g_x[n] = 0
        best = np.empty(xc, x.dtype)
        pos = np.empty(xc, np.int64)  # ky*kw + kx of the first maximum
        for oy in range(yh):
            for ox in range(yw):
                iy0 = oy * sh
                ix0 = ox * sw
                for c in range(xc):
                    best[c] = x[n, iy0, ix0, c]
                    pos[c] = 0
                for ky in range(kh):
                    for kx in range(kw):
                        src = x[n, iy0 + ky, ix0 + kx]
                        p = ky * kw + kx
                        for c in range(xc):
                            v = src[c]
                            if v > best[c]:  # strict: ties keep the earlier position
                                best[c] = v
                                pos[c] = p
                for c in range(xc):
                    p = pos[c]
                    g_x[n, iy0 + p // kw, ix0 + p % kw, c] += g_y[n, oy, ox, c]


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


def max_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """x [mb, xh, xw, c] -> y [mb, yh, yw, c]."""
    y = np.empty((x.shape[0], geo.yh, geo.yw, x.shape[3]), x.dtype)
    _max_fwd(x, geo.kh, geo.kw, geo.sh, geo.sw, y)
    return y


def max_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """g_y [mb, yh, yw, c] -> g_x [mb, xh, xw, c]."""
    g_x = np.empty_like(x)
    _max_bwd(g_y, x, geo.kh, geo.kw, geo.sh, geo.sw, g_x)
    return g_x


def avg_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """x [mb, xh, xw, c] -> y [mb, yh, yw, c]."""
    y = np.empty((x.shape[0], geo.yh, geo.yw, x.shape[3]), x.dtype)
    _avg_fwd(x, geo.kh, geo.kw, geo.sh, geo.sw, y)
    return y


def avg_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """g_y [mb, yh, yw, c] -> g_x [mb, xh, xw, c]; x only gives the shape."""
    g_x = np.empty_like(x)
    _avg_bwd(g_y, geo.kh, geo.kw, geo.sh, geo.sw, g_x)
    return g_x
