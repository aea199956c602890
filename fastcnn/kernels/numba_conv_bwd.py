"""Stride-1 convolution backward: g_x, and per-image partials of g_k and g_b.

``_conv_bwd`` (several input channels): ``g_k`` as dot products of the planar x
frame with the planar ``g_y`` (``_corr_grad``), ``g_x`` as the full correlation
of the zero-padded ``g_y`` with the flipped kernel (``numba_conv_fwd._corr4x3``).
``_conv_bwd_c1`` (one input channel): see the comment above it.

Threads split the batch (``prange`` over images); the work of one image is
``_bwd_image`` / ``_bwd_c1_image``, which the fused conv + pooling backwards
(``numba_fused``) run on the gradient frame they build. Every thread owns its outputs:
``g_x`` scatters stay inside one image, and ``g_k``/``g_b`` are per-image
partials that ``NumbaHost`` sums in image order afterwards (``_sum_parts``), so
results do not depend on scheduling.

``wide`` (an argument, so either variant runs on any CPU; ``NumbaHost`` passes
its own, by default the host's): the ``g_k`` dot blocks for 32 vector registers
(AVX-512) if True, else for 16 (AVX2); see ``numba_blocks``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_blocks import _dot3x3, _dot4x6, _dot5x2, _dot5x3, _mac5x5
from .numba_cache import share_cache_stamp
from .numba_conv_fwd import _corr4x3, _tap_offsets
from .numba_simd import _FAST, ZERO, _add_to, _frame, _from_frame, _repad, _shifted, _to_planar, _vsum

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)


@njit(cache=True, fastmath=_FAST)
def _corr_grad(src, offs, g, gk, wide):
    """gk[j, co] = sum_p g[co, p] * src[p + offs[j]]: the weight gradient of _corr.

    ``wide``: 4 taps x 6 channels per pass over the whole frame (no pixel blocks: one
    horizontal reduction per pass; 1024-pixel blocks measured ~20 % slower, and
    4 x 4, 3 x 6, 5 x 3, 6 x 4, 8 x 4, 3 x 8 blocks slower than 4 x 6, all on AVX-512).
    Past the last tap / channel the last one is re-read; those sums are dropped.
    Not ``wide``: _corr_grad3x3, for 16 vector registers.
    """
    if not wide:
        _corr_grad3x3(src, offs, g, gk)
        return
    ntap, yc = gk.shape
    acc = np.empty(24, gk.dtype)
    offs_pad = _padded(offs, ntap + 3, offs[ntap - 1])
    last = yc - 1
    for co in range(0, yc, 6):
        c1, c2, c3 = min(co + 1, last), min(co + 2, last), min(co + 3, last)
        c4, c5 = min(co + 4, last), min(co + 5, last)
        for j in range(0, ntap, 4):
            d0, d1, d2, d3 = offs_pad[j], offs_pad[j + 1], offs_pad[j + 2], offs_pad[j + 3]
            _dot4x6(g, co, c1, c2, c3, c4, c5, src, d0, d1, d2, d3, acc)
            for t in range(min(4, ntap - j)):
                for c in range(min(6, yc - co)):
                    gk[j + t, co + c] = acc[6 * t + c]


@njit(cache=True, fastmath=_FAST)
def _corr_grad3x3(src, offs, g, gk):
    """_corr_grad with 3 taps x 3 channels per pass, for 16 vector registers (AVX2).

    On an AVX2 CPU (one thread, 32 images, min of 40-60, several runs): 3 x 3
    1.3-1.7 ms on Office-31 convs 1-3, 4 x 3 1.3-2.1 ms, 5 x 2 / 2 x 4 1.2-2.4 ms,
    4 x 6 3.0-3.7 ms (spills), 3 x 4 and 2 x 6 2.7-3.5 ms (LLVM spills there too).
    """
    ntap, yc = gk.shape
    acc = np.empty(9, gk.dtype)
    offs_pad = _padded(offs, ntap + 2, offs[ntap - 1])
    last = yc - 1
    for co in range(0, yc, 3):
        c1, c2 = min(co + 1, last), min(co + 2, last)
        for j in range(0, ntap, 3):
            _dot3x3(g, co, c1, c2, src, offs_pad[j], offs_pad[j + 1], offs_pad[j + 2], acc)
            for t in range(min(3, ntap - j)):
                for c in range(min(3, yc - co)):
                    gk[j + t, co + c] = acc[3 * t + c]


@njit(cache=True)
def _flipped_weights(k, wt_flip):
    """wt_flip[(co*kh + ky)*kw + kx, ci] = k[kh-1-ky, kw-1-kx, ci, co] (_conv_bwd's g_x weights),
    zeros in the padding to 4 taps / 3 channels: one compiled call, not NumPy's flip and copies."""
    kh, kw, xc, yc = k.shape
    wt_flip[:] = 0
    for co in range(yc):
        for ky in range(kh):
            for kx in range(kw):
                row = wt_flip[(co * kh + ky) * kw + kx]
                for ci in range(xc):
                    row[ci] = k[kh - 1 - ky, kw - 1 - kx, ci, co]


@njit(cache=True)
def _c1_weights(k, wtap):
    """wtap[co, ky*kw + kx] = k[ky, kx, 0, co] (_conv_bwd_c1's weights), zeros in the padding."""
    kh, kw, _, yc = k.shape
    wtap[:] = 0
    for co in range(yc):
        for ky in range(kh):
            for kx in range(kw):
                wtap[co, ky * kw + kx] = k[ky, kx, 0, co]


@njit(cache=True)
def _sum_parts(gk_part, gb_part, c1, g_k, g_b):
    """g_k [kh, kw, xc, yc] and g_b [yc] from a stride-1 backward's per-image partials, each element
    summed over the images in order 0, 1, ... (the sums of _sum_batch: the same bits whatever the
    schedule). gk_part [mb, taps, chns]: with ``c1`` rows ky*kw + kx (one input channel), else rows
    (ci, ky, kx); columns past yc and rows past the taps are padding."""
    kh, kw, xc, yc = g_k.shape
    mb = gk_part.shape[0]
    for ky in range(kh):
        for kx in range(kw):
            for ci in range(xc):
                row = ky * kw + kx if c1 else (ci * kh + ky) * kw + kx
                for co in range(yc):
                    s = gk_part[0, row, co]
                    for n in range(1, mb):
                        s += gk_part[n, row, co]
                    g_k[ky, kx, ci, co] = s
    for co in range(yc):
        s = gb_part[0, co]
        for n in range(1, mb):
            s += gb_part[n, co]
        g_b[co] = s


@njit(cache=True)
def _padded(offs, length, fill):
    """``offs`` followed by ``fill`` up to ``length`` entries. A loop, not a slice copy: numba's
    array-to-array slice assignment compiles a string-formatting error path, about 2 s of every
    build of the kernels (docs/numba_aot.md)."""
    out = np.empty(length, np.int64)
    for i in range(length):
        out[i] = offs[i] if i < offs.shape[0] else fill
    return out


@njit(cache=True)
def _bwd_offsets(kh, kw, xc, yc, yh, yw, xh, xw, ntap4):
    """(offs_x, offs_g): the tap offsets of _bwd_image's x frame and of its g_y frame for g_x
    (_gx_frame_shape)."""
    hp = yh + kh - 1
    wp = yw + kw - 1
    rows, wx = _gx_frame_shape(kh, kw, xh, xw)
    offs_x = _tap_offsets(kh, kw, xc, (hp + 1) * wp, wp)
    offs_g = _padded(_tap_offsets(kh, kw, yc, rows * wx, wx), ntap4, 0)  # padding taps: zero weights
    return offs_x, offs_g


@njit(cache=True)
def _gx_frame_shape(kh, kw, xh, xw):
    """(rows, width) of the g_y frame g_x is correlated from: g_x is the full correlation of g_y
    with the flipped kernel, cropped to the input; only the input's rows and columns are computed,
    so the frame holds just the g_y rows and columns they read (the padded g_y at rows
    pt .. pt+xh+kh-2 and columns pl .. pl+xw+kw-2), plus one row of slack for the flat
    correlation's dropped columns. For a 'same' conv this drops kh-1 rows and kw-1 columns of
    the full frame's (24x24 -> 12 channels: 624 outputs per channel, not 728)."""
    return xh + kh, xw + kw - 1


@njit(cache=True)
def _bwd_image(x, n, gw, wt_flip, kh, kw, pt, pl, offs_x, offs_g, g_x, gk, gb, input_grad, wide):
    """The backward of image n from its output gradient gw [yc, yh, wp] (the x frame's width,
    zeros at ox >= yw): gb [yc], gk [xc*kh*kw, yc] and, with ``input_grad``, g_x[n].

    The prange body of ``_conv_bwd`` and of the fused ``numba_fused._conv_pool_bwd``.
    """
    yc, yh, wp = gw.shape
    _, xh, xw, xc = x.shape
    hp = yh + kh - 1
    yw = wp - kw + 1
    xs = _frame(xc * (hp + 1) * wp, x.dtype).reshape((xc, hp + 1, wp))
    _to_planar(x, n, pt, pl, xs)
    gw2 = gw.reshape(yc, yh * wp)
    for co in range(yc):
        gb[co] = _vsum(gw2[co])
    _corr_grad(xs.reshape(-1), offs_x, gw2, gk, wide)
    if not input_grad:
        return
    xcp = wt_flip.shape[1]
    rows, wx = _gx_frame_shape(kh, kw, xh, xw)
    gq = _frame(yc * rows * wx, x.dtype).reshape((yc, rows, wx))
    _repad(gw, yw, kh - 1 - pt, kw - 1 - pl, gq)  # from gw: row copies, not a second transpose
    out = _frame(xcp * xh * wx, x.dtype).reshape((xcp, xh * wx))
    _corr4x3(gq.reshape(-1), offs_g, wt_flip, np.zeros(xcp, x.dtype), out, wide)  # g_x has no bias
    _from_frame(out, wx, ZERO, ZERO, g_x, n)


@njit(parallel=True, cache=True)
def _conv_bwd(g_y, x, wt_flip, kh, kw, pt, pl, g_x, gk_part, gb_part, input_grad, wide):
    """Stride 1, per image n: g_x[n], and partial sums gk_part[n] [xc*kh*kw, yc], gb_part[n].

    g_x is the full correlation of g_y with the flipped kernel, in tap order
    (co, ky, kx): wt_flip[(co*kh + ky)*kw + kx, ci] = k[kh-1-ky, kw-1-kx, ci, co],
    zero padded to a multiple of 4 taps and 3 channels (see _corr4x3); cropped to the input.
    gk_part rows are in tap order (ci, ky, kx). ``wide``: the g_k blocks (see _corr_grad).
    """
    mb, _, _, xc = x.shape
    _, yh, yw, yc = g_y.shape
    wp = yw + kw - 1
    offs_x, offs_g = _bwd_offsets(kh, kw, xc, yc, yh, yw, x.shape[1], x.shape[2], wt_flip.shape[0])
    for n in prange(mb):
        # g_y in the x frame's width, zeros at ox >= yw
        gw = _frame(yc * yh * wp, x.dtype).reshape((yc, yh, wp))
        i = np.int64(n)
        _to_planar(g_y, i, ZERO, ZERO, gw)
        _bwd_image(x, i, gw, wt_flip, kh, kw, pt, pl, offs_x, offs_g, g_x, gk_part[n], gb_part[n], input_grad,
                   wide)


# One input channel (SimpleConvNet: 1 -> 30, 5x5) gets its own backward. g_x as a
# full correlation over 30 zero-padded g_y planes wastes ~1/3 of its work on the
# padding and, with one output channel, cannot share loads across channels. Instead:
# cols[t, p] = sum_co k[t, co] * g[co, p] is a small GEMM (taps x channels, 5 x 5
# per pass: 10 vector loads + 5 stores per 25 FMAs), then col2im as a gather: for each kx,
# h_kx[q] = sum_ky cols[(ky, kx), q - ky*yw], and g_x[r, c + kx] += h_kx[r, c]. g_k uses 5 taps x 3
# channels per pass (15 accumulators in registers; 5 x 2 if not wide, for AVX2). Channel and tap
# counts are zero padded to the block sizes, so no remainder loops. Frames are yw wide, not
# yw + kw - 1: x is read through kw column-shifted copies (_shifted), so g_k and the GEMM
# skip the kw - 1 dropped columns per row (14 % of their work for 5x5 on 28x28).


@njit(cache=True)
def _c1_offsets(kh, kw, ntap5, yh, yw):
    """Tap offsets into _shifted's frames: tap (ky, kx) at kx*hp*yw + ky*yw (padding taps: 0)."""
    offs = np.zeros(ntap5, np.int64)  # padding taps read offset 0 (their sums are dropped / zero)
    for ky in range(kh):
        for kx in range(kw):
            offs[ky * kw + kx] = kx * (yh + kh - 1) * yw + ky * yw
    return offs


@njit(cache=True)
def _bwd_c1_image(x, n, gw, wtap, kh, kw, pt, pl, offs, g_x, gk, gb, input_grad, wide):
    """The one-input-channel backward of image n from its output gradient gw [ycp, yh, yw]
    (channels zero padded to wtap's): gb [yc], gk [ntap5, ycp] and, with ``input_grad``, g_x[n].

    The prange body of ``_conv_bwd_c1`` and of the fused ``numba_fused._conv_pool_bwd_c1``.
    """
    ycp, yh, yw = gw.shape
    ntap5 = wtap.shape[1]
    hp = yh + kh - 1
    wp = yw + kw - 1
    L = yh * yw  # output pixels of one frame (frames are yw wide, see _shifted)
    M = hp * yw  # a column-shifted x frame; also one kx slice of g_x before the shift
    pad = (kh - 1) * yw  # largest row shift
    xs = _frame((hp + 1) * wp, x.dtype).reshape((1, hp + 1, wp))
    _to_planar(x, n, pt, pl, xs)
    xf = _shifted(xs[0, :hp], kw, yw).reshape(-1)
    g2 = gw.reshape(ycp, L)
    for co in range(gb.shape[0]):
        gb[co] = _vsum(g2[co])
    # g_k: 5 taps x 3 channels per pass over the frame (5 x 2 if not wide)
    acc = np.empty(15, x.dtype)
    for j in range(0, ntap5, 5):
        d0, d1, d2, d3, d4 = offs[j], offs[j + 1], offs[j + 2], offs[j + 3], offs[j + 4]
        if wide:
            for co in range(0, ycp, 3):
                _dot5x3(g2, co, xf, d0, d1, d2, d3, d4, acc)
                for t in range(5):
                    for c in range(3):
                        gk[j + t, co + c] = acc[3 * t + c]
        else:
            for co in range(0, ycp, 2):
                _dot5x2(g2, co, xf, d0, d1, d2, d3, d4, acc)
                for t in range(5):
                    for c in range(2):
                        gk[j + t, co + c] = acc[2 * t + c]
    if not input_grad:
        return
    # g_x: cols = GEMM over channels, then col2im as a gather per kx, then the kx shifts
    cols = _frame(ntap5 * (pad + M), x.dtype).reshape((ntap5, pad + M))
    for t in range(ntap5):
        cols[t, :pad] = 0
        cols[t, pad + L :] = 0
    g2f = gw.reshape(-1)
    for t in range(0, ntap5, 5):
        for co in range(0, ycp, 5):
            _mac5x5(cols, t, pad, L, g2f, co * L, (co + 1) * L, (co + 2) * L, (co + 3) * L, (co + 4) * L,
                    wtap, co, t, co == 0)
    h = np.zeros((kw, M), x.dtype)
    for t in range(kh * kw):  # h[kx, q] += cols[t, pad + q - ky*yw]
        a = pad - (t // kw) * yw
        _add_to(h[t % kw], cols[t, a : a + M])
    out = np.zeros((1, hp, wp), x.dtype)
    for kx in range(kw):  # frame[r, c + kx] += h[kx, r*yw + c]
        for r in range(hp):
            _add_to(out[0, r, kx : kx + yw], h[kx, r * yw : r * yw + yw])
    _from_frame(out.reshape(1, -1), wp, pt, pl, g_x, n)


@njit(parallel=True, cache=True)
def _conv_bwd_c1(g_y, x, wtap, kh, kw, pt, pl, g_x, gk_part, gb_part, input_grad, wide):
    """Stride 1, one input channel, per image n: g_x[n], gk_part[n] [ntap5, ycp], gb_part[n].

    wtap [ycp, ntap5] = k[ky, kx, 0, co] at [co, ky*kw + kx], zero padded to
    ycp (a multiple of NumbaHost.c1_chn: 15 if ``wide``, else 10) channels and ntap5 (a multiple of 5) taps.
    ``wide``: g_k in 5 taps x 3 channels per pass (_dot5x3), else 5 x 2 (_dot5x2).
    """
    mb = x.shape[0]
    _, yh, yw, yc = g_y.shape
    ycp, ntap5 = wtap.shape
    offs = _c1_offsets(kh, kw, ntap5, yh, yw)
    for n in prange(mb):
        gw = _frame(ycp * yh * yw, x.dtype).reshape((ycp, yh, yw))
        i = np.int64(n)
        _to_planar(g_y, i, ZERO, ZERO, gw[:yc])
        gw[yc:] = 0
        _bwd_c1_image(x, i, gw, wtap, kh, kw, pt, pl, offs, g_x, gk_part[n], gb_part[n], input_grad, wide)
