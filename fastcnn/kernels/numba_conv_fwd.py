"""Stride-1 convolution forward: flat correlations over planar frames, one image per thread.

``_conv_fwd`` runs ``_corr`` (4 taps x 2 output channels per pass, 8 taps x 1
for an odd last channel); ``_conv_fwd_blocked`` runs ``_corr5`` (5 x 5: one
input channel) or ``_corr4x3`` (4 x 3: several channels with the narrow
blocks) on weights zero padded to the block. Which one serves a call is
``NumbaHost``'s choice (the table in ``numba_kernels``); both run one image per
task through ``_conv_image``, which the fused conv + pooling kernels
(``numba_fused``) run too, so their conv outputs are the same bits. ``_corr4x3`` is also
the ``g_x`` correlation of ``numba_conv_bwd``. Strided convolutions do not come
here: they run im2col + one sgemm (``numba_elementwise._ext_regions``).

No im2col matrix is built: the planar image of one sample stays in L1/L2
while all its taps run, so memory traffic is about the size of x and y.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_blocks import _axpy1, _axpy4x2, _axpy4x3, _axpy4x6, _axpy8, _mac5x5
from .numba_cache import share_cache_stamp
from .numba_simd import _FAST, NO, YES, ZERO, _add_scalar, _frame, _from_frame, _to_planar

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)


# Stride 1 runs as a "flat" correlation: a planar frame [chn, rows, width] is
# one 1-D array, so output pixel p = oy*width + ox reads src[p + off(tap)] with
# off(ky, kx, ci) = ci*plane + ky*width + kx, the same shift for every pixel.
# One tap over a block of pixels is then a unit-stride AXPY, and grouping 4
# taps x 2 output channels per pass keeps the FMA units busy (a single AXPY is
# bound by the store of o[p]). Columns ox >= yw of each frame row are computed
# but never read back (a few % of waste for 3x3 kernels).

_BLOCK = 1024  # pixels per pass: a 4 KiB slice of each output row stays in L1 across all taps


@njit(cache=True)
def _tap_offsets(kh, kw, c, plane, width):
    """off[(ci*kh + ky)*kw + kx] = ci*plane + ky*width + kx.

    Taps run channel-major, so consecutive taps read the same plane of the
    frame, which stays in L1 while its kh*kw taps run (weights are reordered
    to match by the Python wrappers).
    """
    offs = np.empty(kh * kw * c, np.int64)
    for ci in range(c):
        for ky in range(kh):
            for kx in range(kw):
                offs[(ci * kh + ky) * kw + kx] = ci * plane + ky * width + kx
    return offs


@njit(cache=True)
def _tap_weights(k, b, wt, bias):
    """wt[(ci*kh + ky)*kw + kx, co] = k[ky, kx, ci, co] (the taps' order of _tap_offsets) and
    bias[co] = b[co]; zeros in wt's and bias's padding (rows past the taps, columns past the
    channels). One compiled call per layer and step instead of NumPy's transpose, zeros and
    copies (2.4 us of Python a conv; docs/benchmarks.md, "The passes' fixed cost", item 5)."""
    kh, kw, xc, yc = k.shape
    wt[:] = 0
    bias[:] = 0
    for ci in range(xc):
        for ky in range(kh):
            for kx in range(kw):
                row = wt[(ci * kh + ky) * kw + kx]
                for co in range(yc):
                    row[co] = k[ky, kx, ci, co]
    for co in range(yc):
        bias[co] = b[co]


@njit(cache=True, fastmath=_FAST)
def _corr(src, offs, wt, bias, out):
    """out[co, p] = bias[co] + sum_j wt[j, co] * src[p + offs[j]] for every p < out.shape[1]."""
    ntap, yc = wt.shape
    length = out.shape[1]
    for p0 in range(0, length, _BLOCK):
        n = min(_BLOCK, length - p0)
        for co in range(0, yc, 2):
            pair = co + 1 < yc
            out[co, p0 : p0 + n] = bias[co]
            if pair:
                out[co + 1, p0 : p0 + n] = bias[co + 1]
            j = 0
            while pair and j + 4 <= ntap:
                d0, d1, d2, d3 = offs[j] + p0, offs[j + 1] + p0, offs[j + 2] + p0, offs[j + 3] + p0
                _axpy4x2(out, co, p0, n, src, d0, d1, d2, d3, wt, j)
                j += 4
            while not pair and j + 8 <= ntap:
                d0, d1, d2, d3 = offs[j] + p0, offs[j + 1] + p0, offs[j + 2] + p0, offs[j + 3] + p0
                d4, d5, d6, d7 = offs[j + 4] + p0, offs[j + 5] + p0, offs[j + 6] + p0, offs[j + 7] + p0
                _axpy8(out, co, p0, n, src, d0, d1, d2, d3, d4, d5, d6, d7, wt, j)
                j += 8
            for jj in range(j, ntap):  # the last few taps
                d0 = offs[jj] + p0
                _axpy1(out, co, p0, n, src, d0, wt[jj, co])
                if pair:
                    _axpy1(out, co + 1, p0, n, src, d0, wt[jj, co + 1])


@njit(cache=True, fastmath=_FAST)
def _corr4x3(src, offs, wt, bias, out, wide):
    """out[co, p] = bias[co] + sum_j wt[j, co] * src[p + offs[j]]: _corr with 4 taps x 3 channels per pass.

    wt [ntap4, xcp], offs [ntap4] and bias [xcp] are padded to multiples of 4 taps / 3 channels
    (zero weights and bias, offset 0). Whole-frame passes: 1024-pixel blocks measured slower.
    Runs g_x, and the forward where the output channels are a multiple of 3 or more than 8
    (see NumbaHost._fwd4x3), in both variants. ``wide`` (32 vector registers): 6 channels per
    pass while 6 are left (_axpy4x6, each channel's expression that of _axpy4x3: the same bits
    in both variants); per image on AVX-512, 24x24 12 -> 24 channels 33.6 -> 22.6 us, 48x48
    6 -> 12 21.6 -> 17.2, 26x26 24 -> 12 33.5 -> 27.8. With AVX2 code the 4 x 6 pass measured
    0.88-1.11x of 4 x 3, so the narrow variant keeps 4 x 3 (docs/benchmarks.md, "Forward blocks").
    """
    ntap4, xcp = wt.shape
    length = out.shape[1]
    six = xcp - xcp % 6 if wide else 0
    for co in range(0, six, 6):
        for c in range(6):
            out[co + c, :] = bias[co + c]
        for j in range(0, ntap4, 4):
            _axpy4x6(out, co, ZERO, length, src, offs[j], offs[j + 1], offs[j + 2], offs[j + 3], wt, j, co)
    for co in range(six, xcp, 3):
        for c in range(3):
            out[co + c, :] = bias[co + c]
        for j in range(0, ntap4, 4):
            _axpy4x3(out, co, ZERO, length, src, offs[j], offs[j + 1], offs[j + 2], offs[j + 3], wt, j, co)


@njit(cache=True, fastmath=_FAST)
def _corr5(src, offs, wt, bias, out):
    """As _corr with 5 taps x 5 output channels per pass; offs [ntap5], wt [ntap5, ycp], out [ycp, L].

    Tap and channel counts are padded to multiples of 5 (zero weights, offset 0).
    """
    ntap5, ycp = wt.shape
    length = out.shape[1]
    for p0 in range(0, length, _BLOCK):
        n = min(_BLOCK, length - p0)
        for co in range(0, ycp, 5):
            for j in range(0, ntap5, 5):
                d0, d1, d2 = offs[j] + p0, offs[j + 1] + p0, offs[j + 2] + p0
                d3, d4 = offs[j + 3] + p0, offs[j + 4] + p0
                _mac5x5(out, co, p0, n, src, d0, d1, d2, d3, d4, wt, j, co, j == 0)
            for c in range(5):
                if co + c < bias.shape[0]:
                    _add_scalar(out[co + c, p0 : p0 + n], bias[co + c])


@njit(cache=True)
def _conv_image(x, n, offs, wt, b, pt, pl, hp, wp, out, blocked, five, wide):
    """The conv output of image n as a planar frame: out[co, oy*wp + ox] (columns ox >= yw unused).

    ``blocked``: _corr5 if ``five`` else _corr4x3 (offs / wt / b padded to the block; ``wide``:
    its 4 x 6 passes);
    else _corr. The prange body of every stride-1 forward, unfused (``_conv_fwd``,
    ``_conv_fwd_blocked``) and fused (``numba_fused``), so all do the same arithmetic.
    """
    xc = x.shape[3]
    # +1 row: slack for the dropped columns' reads
    xs = _frame(xc * (hp + 1) * wp, x.dtype).reshape((xc, hp + 1, wp))
    _to_planar(x, n, pt, pl, xs)
    if not blocked:
        _corr(xs.reshape(-1), offs, wt, b, out)
    elif five:
        _corr5(xs.reshape(-1), offs, wt, b, out)
    else:
        _corr4x3(xs.reshape(-1), offs, wt, b, out, wide)


@njit(parallel=True, cache=True)
def _conv_fwd(x, wt, b, kh, kw, pt, pl, y):
    """Stride 1: y[n, oy, ox, co] = b[co] + sum x_pad[n, oy+ky, ox+kx, ci] * k[ky, kx, ci, co].

    wt [xc*kh*kw, yc] is k in tap order (ci, ky, kx).
    """
    mb, _, _, xc = x.shape
    yc = wt.shape[1]
    _, yh, yw, _ = y.shape
    hp = yh + kh - 1  # padded extent read by the windows
    wp = yw + kw - 1
    offs = _tap_offsets(kh, kw, xc, (hp + 1) * wp, wp)
    for n in prange(mb):
        i = np.int64(n)
        out = _frame(yc * yh * wp, y.dtype).reshape((yc, yh * wp))
        _conv_image(x, i, offs, wt, b, pt, pl, hp, wp, out, NO, NO, NO)
        _from_frame(out, wp, ZERO, ZERO, y, i)


@njit(parallel=True, cache=True)
def _conv_fwd_blocked(x, offs, wt, b, kh, kw, pt, pl, y, five, wide):
    """_conv_fwd through a blocked correlation (offs/wt/b padded, see NumbaHost._forward_weights):
    _corr5 (5 taps x 5 channels) if ``five``, else _corr4x3 (4 taps x 3 channels; x 6 if ``wide``)."""
    mb = x.shape[0]
    ycp = wt.shape[1]
    _, yh, yw, _ = y.shape
    hp = yh + kh - 1
    wp = yw + kw - 1
    for n in prange(mb):
        i = np.int64(n)
        out = _frame(ycp * yh * wp, y.dtype).reshape((ycp, yh * wp))
        _conv_image(x, i, offs, wt, b, pt, pl, hp, wp, out, YES, five, wide)
        _from_frame(out, wp, ZERO, ZERO, y, i)
