"""Fused stride-1 convolution + bias + activation + pooling, forward and backward.

A conv layer followed directly by a max or avg pooling layer runs as one
parallel pass per image (``prange`` over images). Forward: the conv output of
one image is made in a per-thread planar frame (``_conv_image``, the prange
body of the unfused forward), copied to an NHWC scratch image (the unfused
forward's transposes), and its ReLU and pooling run there, in cache (the scans
of numba_pool, one image at a time); a 2x2 stride-2 max pooling reads the frame
itself (``_max2_frame``, the same bits); only the pooled output leaves, with a
compact ``code`` for the backward: where each max came from, and ReLU's mask.
Backward: the conv output's gradient is rebuilt per image in a frame from the
pooled gradient and ``code`` (pooling's and the activation's backward), then
the unfused per-image backward body runs on it (``_bwd_image`` /
``_bwd_c1_image``). So the conv-sized activation and its gradient never go
through memory, the backward reuses the forward's choice of each max, and
every result equals the unfused chain (conv, ReLU, pooling; then their
backwards) bit for bit: the same functions in the same order, pooling and the
ReLU with the unfused kernels' expressions.

A dropout or noise layer right after the pooling (``steps.ConvPoolStep(after=...)``) runs in
the same pass, in the kernels' ``_draw`` / ``_drop`` twins (the same bodies plus the draw: a
model without such a layer compiles none of the draw code, which measured about 5 s of a
40 s cold start): the forward takes its draw as plain arguments (``mode``, ``key``, ``n0``,
``p1``, ``p2``: ``masks.Draw``; one specialisation for dropout and noise)
and applies it to each image's pooled output right after writing it, still in cache, with
numba_random's span helpers, the counter being the element's flat index in the whole
``[mb, pyh, pyw, yc]`` output (``n0``: the batch index of ``x[0]``, non-zero only in a
numba-aot piece); dropout's uint8 mask goes to ``mask``. The backward applies dropout's
backward (``drop``, ``mask``, ``scale``) to each image's pooled gradient before
``_pool_grad`` reads it; noise's is the identity. The same bits as the layers one by one.

``code`` (uint8, NHWC like the arrays it goes with):

- max pooling: ``[mb, pyh, pyw, yc]``, per pooled element the window element
  of the first maximum (``ky*pkw + kx``), plus 128 if the gradient passes (no
  activation, or the maximum is > 0: ReLU's mask at that element). Windows of
  at most 128 elements.
- avg pooling with ReLU: ``[mb, yh, yw, yc]``, ReLU's mask (1 where the conv
  output is > 0), since every element of a window gets gradient.
- avg pooling without activation: ``[mb, 1, 1, 1]``, unused.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_cache import share_cache_stamp
from .numba_conv_bwd import _bwd_c1_image, _bwd_image, _bwd_offsets, _c1_offsets
from .numba_conv_fwd import _conv_image
from .numba_pool import _tap_argmax
from .numba_random import _apply_draw, _kept_grad
from .numba_simd import ZERO, _frame, _from_frame, _to_planar

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)

#: ``code`` bit set where a max window's gradient passes the activation
_PASS = 128


@njit(cache=True)
def _relu_row(v, out):
    """out = max(v, 0), the expression of numba_elementwise._relu (NaN stays NaN, -0.0 stays)."""
    for i in range(v.shape[0]):
        x = v[i]
        out[i] = x if not x < 0 else 0


# The forward pools the conv output of one image the way numba_pool does the whole
# batch, on an NHWC copy of the frame (the _from_frame transposes of the unfused
# forward, into a scratch image that stays in cache): channels innermost, so the
# passes and the picks run over long unit-stride vectors. Pooling the planar frame
# itself measured slower: its rows are short (SimpleConvNet: 12 outputs), and flat
# passes over whole planes compute psh*psw times the outputs needed (documented in
# docs/benchmarks.md, "Fused conv + pooling").


@njit(cache=True)
def _window_offsets(pkh, pkw, width):
    """off[ky*pkw + kx] = ky*width + kx: window element (ky, kx) from the window's start."""
    offs = np.empty(pkh * pkw, np.int64)
    for ky in range(pkh):
        for kx in range(pkw):
            offs[ky * pkw + kx] = ky * width + kx
    return offs


@njit(cache=True)
def _max_image(xn, relu, yw, pkh, pkw, psh, psw, yn, code):
    """yn [pyh, pyw, yc] = max over each window of xn (act of the conv output, flat NHWC
    [yh, yw, yc]), code [pyh*pyw*yc]: numba_pool._max_bwd's scan (first maximum, row-major)."""
    pyh, pyw, yc = yn.shape
    yf = yn.reshape(-1)
    rowlen = yw * yc
    span = ((pyw - 1) * psw + 1) * yc  # flat positions where a window of the row starts
    bufs = np.empty((2, span), xn.dtype)
    ats = np.zeros((3, span), np.int32)  # window element of the first max (ats[2]: element 0)
    for oy in range(pyh):
        r0 = oy * psh * rowlen
        h = xn[r0 : r0 + span]
        at = ats[2]
        t = 0
        for ky in range(pkh):
            for kx in range(1 if ky == 0 else 0, pkw):
                d = r0 + ky * rowlen + kx * yc
                dst, dst_at = bufs[t % 2], ats[t % 2]
                _tap_argmax(dst, dst_at, h, at, xn[d : d + span], ky * pkw + kx)
                h, at = dst, dst_at
                t += 1
        for ox in range(pyw):
            a = ox * psw * yc
            j = (oy * pyw + ox) * yc
            if relu:  # ReLU's mask at the maximum: its output > 0
                for c in range(yc):
                    v = h[a + c]
                    yf[j + c] = v
                    code[j + c] = at[a + c] + (_PASS if v > 0 else 0)
            else:
                for c in range(yc):
                    yf[j + c] = h[a + c]
                    code[j + c] = at[a + c] + _PASS


@njit(cache=True)
def _act(v, relu, zero):
    """ReLU's expression of _relu_row when ``relu``, else v (``zero``: 0 of v's type, so a float32
    kernel compares and selects in float32; the bits are those of _relu_row's ``0``)."""
    return (v if not v < zero else zero) if relu else v


@njit(cache=True)
def _max2_frame(out, wp, relu, y, n, code):
    """_max_image for 2x2 windows at stride 2, read straight from the planar conv frame
    out [>= yc, yh*wp] into y[n] [pyh, pyw, yc] and code [pyh, pyw, yc]: per channel, two frame
    rows give a row of pooled outputs (no NHWC copy, no short loops over the channels) in a
    planar scratch frame, then one transpose to NHWC (_from_frame, 8x8 tiles from 8 channels up;
    the codes by a plain loop).
    The same scan (row-major, a later element wins only if strictly greater), ReLU's expression,
    and codes: the same bits. Measured per image (AMD Zen 5; docs/benchmarks.md, "Fused conv +
    pooling"): 96x96x6 9.1 us (38.8 with the NHWC scans, 16.7 writing each output straight into
    NHWC), 48x48x12 4.5 (16.4, 11.2), 24x24x30 4.5 (10.3, 12.1)."""
    pyh, pyw, yc = code.shape
    best = np.empty((yc, pyh * pyw), out.dtype)
    at = np.empty((yc, pyh * pyw), np.uint8)
    zero = np.zeros(1, out.dtype)[0]
    one, two, three = np.uint8(1), np.uint8(2), np.uint8(3)
    passes, stops = np.uint8(_PASS), np.uint8(0)
    for c in range(yc):
        plane = out[c]
        for oy in range(pyh):
            r0 = plane[2 * oy * wp : 2 * oy * wp + 2 * pyw]
            r1 = plane[(2 * oy + 1) * wp : (2 * oy + 1) * wp + 2 * pyw]
            best_row = best[c, oy * pyw : (oy + 1) * pyw]
            at_row = at[c, oy * pyw : (oy + 1) * pyw]
            for ox in range(pyw):
                a = _act(r0[2 * ox], relu, zero)
                b = _act(r0[2 * ox + 1], relu, zero)
                d = _act(r1[2 * ox], relu, zero)
                e = _act(r1[2 * ox + 1], relu, zero)
                win = b > a
                v = b if win else a
                k = one if win else stops
                win = d > v
                v = d if win else v
                k = two if win else k
                win = e > v
                v = e if win else v
                k = three if win else k
                best_row[ox] = v
                at_row[ox] = k + (passes if (v > zero or not relu) else stops)
    _from_frame(best, pyw, ZERO, ZERO, y, n)
    # the codes by a plain loop: as fast as _from_frame's tiles for uint8 within 10 %, and no
    # uint8 build of it to compile into every fused forward (about 2 s of the prebuilt build)
    cf = code.reshape(-1)
    for c in range(yc):
        at_c = at[c]
        for j in range(pyh * pyw):
            cf[j * yc + c] = at_c[j]


@njit(cache=True)
def _avg_image(xi, psh, psw, pkh, pkw, yn):
    """yn [pyh, pyw, yc] = mean over each window of xi [yh, yw, yc]: numba_pool._avg_fwd's loop."""
    pyh, pyw, yc = yn.shape
    scale = 1.0 / (pkh * pkw)
    for oy in range(pyh):
        for ox in range(pyw):
            out = yn[oy, ox]
            out[:] = 0
            for ky in range(pkh):
                for kx in range(pkw):
                    src = xi[oy * psh + ky, ox * psw + kx]
                    for c in range(yc):
                        out[c] += src[c]
            for c in range(yc):
                out[c] = out[c] * scale


@njit(cache=True)
def _pool_image(out, yh, yw, wp, relu, avg, pkh, pkw, psh, psw, y, n, code):
    """y[n] = pool(act(conv)) of image n from its conv frame out [>= yc, yh*wp]; code = code[n]."""
    if not avg and pkh == 2 and pkw == 2 and psh == 2 and psw == 2:
        _max2_frame(out, wp, relu, y, n, code)
        return
    yc = y.shape[3]
    xi = np.empty((1, yh, yw, yc), out.dtype)
    _from_frame(out, wp, ZERO, ZERO, xi, ZERO)
    xn = xi.reshape(-1)
    if relu:
        act = np.empty(xn.shape[0], out.dtype)
        _relu_row(xn, act)
        xn = act
    if not avg:
        _max_image(xn, relu, yw, pkh, pkw, psh, psw, y[n], code.reshape(-1))
        return
    _avg_image(xn.reshape(yh, yw, yc), psh, psw, pkh, pkw, y[n])
    if relu:  # ReLU's mask, for every element of the windows
        _positive(xn, code.reshape(-1))


@njit(cache=True)
def _positive(v, mask):
    """mask = 1 where v > 0, else 0 (ReLU's mask from its output)."""
    for i in range(v.shape[0]):
        mask[i] = 1 if v[i] > 0 else 0


@njit(cache=True)
def _pool_grad(g_p, n, code, relu, avg, yw, pkh, pkw, psh, psw, gw):
    """gw [>= yc, yh, width >= yw] = the conv output's gradient of image n from the pooled gradient
    g_p[n] [pyh, pyw, yc] and ``code``, zeros elsewhere: the arithmetic of numba_pool's backward
    (zeros, then each window's share added in window order) and of ReLU's (0 where masked).

    Max: each share goes straight into the planar frame (one element per window). Avg: every
    element of a window gets one, so the shares are spread over an NHWC image first (channels
    innermost, numba_pool._avg_bwd's loop), masked, then transposed into the frame (_to_planar,
    as the unfused conv backward reads its g_y).
    """
    if not avg:
        _max_grad(g_p[n], code, pkh, pkw, psh, psw, gw)
        return
    _, yh, _ = gw.shape
    yc = g_p.shape[3]
    gi = np.zeros((1, yh, yw, yc), g_p.dtype)
    _avg_spread(g_p[n], pkh, pkw, psh, psw, gi[0])
    if relu:
        gm = np.empty((1, yh, yw, yc), g_p.dtype)
        _relu_mask(gi.reshape(-1), code.reshape(-1), gm.reshape(-1))
        gi = gm
    if gw.shape[0] == yc:
        _to_planar(gi, ZERO, ZERO, ZERO, gw)
    else:  # one input channel: output channels zero padded to the g_k blocks
        _to_planar(gi, ZERO, ZERO, ZERO, gw[:yc])
        gw[yc:] = 0


@njit(cache=True)
def _max_grad(gn, code, pkh, pkw, psh, psw, gw):
    """gw [>= yc, yh, width] = 0, then gn [pyh, pyw, yc] added at each window's element in code
    (numba_pool._max_bwd's sums), unless masked (ReLU's 0). A branchless form (masked shares
    adding 0: the same bits) measured slower, 10 us against 7 per SimpleConvNet image."""
    pyh, pyw, yc = gn.shape
    _, yh, width = gw.shape
    plane = yh * width
    gf = gw.reshape(-1)
    gf[:] = 0
    offs = _window_offsets(pkh, pkw, width)
    for py in range(pyh):
        for px in range(pyw):
            start = py * psh * width + px * psw
            g = gn[py, px]
            at = code[py, px]
            for c in range(yc):
                if at[c] >= _PASS:
                    gf[c * plane + start + offs[at[c] - _PASS]] += g[c]


@njit(cache=True)
def _avg_spread(gn, pkh, pkw, psh, psw, gi):
    """gi [yh, yw, yc] (zeros) += gn [pyh, pyw, yc] / (pkh*pkw) over each window: numba_pool._avg_bwd."""
    pyh, pyw, yc = gn.shape
    scale = 1.0 / (pkh * pkw)
    for oy in range(pyh):
        for ox in range(pyw):
            g = gn[oy, ox]
            for ky in range(pkh):
                for kx in range(pkw):
                    dst = gi[oy * psh + ky, ox * psw + kx]
                    for c in range(yc):
                        dst[c] += g[c] * scale


@njit(cache=True)
def _relu_mask(g, mask, out):
    """out = g where mask, else 0: numba_elementwise._relu_backward with the mask of y > 0."""
    for i in range(g.shape[0]):
        v = g[i]  # loaded on both paths, else LLVM emits a masked load
        out[i] = v if mask[i] else 0


@njit(parallel=True, cache=True)
def _conv_pool_fwd(x, offs, wt, b, kh, kw, pt, pl, yh, yw, blocked, five, relu, avg, pkh, pkw, psh, psw,
                   y, code, wide):
    """y[n] = pool(act(conv(x[n]) + b)), conv stride 1 to [yh, yw] (offs / wt / b / blocked / five / wide:
    see numba_conv_fwd._conv_image), act ReLU if ``relu`` else none, pool avg if ``avg`` else max,
    window pkh x pkw, stride psh x psw; code: see the module docstring."""
    mb = x.shape[0]
    ycp = wt.shape[1]
    hp = yh + kh - 1
    wp = yw + kw - 1
    for n in prange(mb):
        out = _frame(ycp * yh * wp, y.dtype).reshape((ycp, yh * wp))
        i = np.int64(n)
        _conv_image(x, i, offs, wt, b, pt, pl, hp, wp, out, blocked, five, wide)
        _pool_image(out, yh, yw, wp, relu, avg, pkh, pkw, psh, psw, y, i, code[i])


@njit(parallel=True, cache=True)
def _conv_pool_fwd_draw(x, offs, wt, b, kh, kw, pt, pl, yh, yw, blocked, five, relu, avg, pkh, pkw, psh, psw,
                        y, code, wide, mode, key, n0, p1, p2, mask):
    """_conv_pool_fwd, then, as each image's y
    is written, a dropout or noise layer's draw (``mode``, ``key``, ``p1``, ``p2``: masks.Draw;
    dropout's mask [mb, pyh, pyw, yc] into ``mask``) with y's flat index as the counter, x[0]
    being image ``n0`` of the whole batch (numba_random._apply_draw)."""
    mb = x.shape[0]
    ycp = wt.shape[1]
    _, pyh, pyw, yc = y.shape
    hp = yh + kh - 1
    wp = yw + kw - 1
    per = pyh * pyw * yc
    for n in prange(mb):
        out = _frame(ycp * yh * wp, y.dtype).reshape((ycp, yh * wp))
        i = np.int64(n)
        _conv_image(x, i, offs, wt, b, pt, pl, hp, wp, out, blocked, five, wide)
        _pool_image(out, yh, yw, wp, relu, avg, pkh, pkw, psh, psw, y, i, code[i])
        _apply_draw(y[i].reshape(-1), (n0 + i) * per, mode, key, p1, p2, mask[i].reshape(-1))


@njit(cache=True)
def _pooled_grad(g_p, n, drop, mask, scale):
    """(array, index) of image n's pooled gradient: g_p itself, or with ``drop`` dropout's backward
    of it (g * scale where mask, else 0: numba_random._kept_grad) in a scratch image."""
    if not drop:
        return g_p, n
    gm = np.empty((1,) + g_p.shape[1:], g_p.dtype)
    _kept_grad(g_p[n].reshape(-1), mask[n].reshape(-1), scale, gm.reshape(-1))
    return gm, np.int64(0)


@njit(parallel=True, cache=True)
def _conv_pool_bwd(g_p, code, x, wt_flip, kh, kw, pt, pl, yh, yw, relu, avg, pkh, pkw, psh, psw,
                   g_x, gk_part, gb_part, input_grad, wide):
    """The backward of _conv_pool_fwd, several input channels: numba_conv_bwd._conv_bwd with its
    g_y frame made from the pooled gradient g_p [mb, pyh, pyw, yc] and ``code``."""
    mb, _, _, xc = x.shape
    yc = g_p.shape[3]
    wp = yw + kw - 1
    offs_x, offs_g = _bwd_offsets(kh, kw, xc, yc, yh, yw, x.shape[1], x.shape[2], wt_flip.shape[0])
    for n in prange(mb):
        gw = _frame(yc * yh * wp, x.dtype).reshape((yc, yh, wp))
        i = np.int64(n)
        _pool_grad(g_p, i, code[i], relu, avg, yw, pkh, pkw, psh, psw, gw)
        _bwd_image(x, i, gw, wt_flip, kh, kw, pt, pl, offs_x, offs_g, g_x, gk_part[n], gb_part[n], input_grad,
                   wide)


@njit(parallel=True, cache=True)
def _conv_pool_bwd_drop(g_p, code, drop, mask, scale, x, wt_flip, kh, kw, pt, pl, yh, yw, relu, avg, pkh, pkw,
                        psh, psw, g_x, gk_part, gb_part, input_grad, wide):
    """The backward of _conv_pool_fwd, several input channels: numba_conv_bwd._conv_bwd with its
    g_y frame made from the pooled gradient g_p [mb, pyh, pyw, yc] (with ``drop``: through the
    dropout's ``mask`` and ``scale`` first) and ``code``."""
    mb, _, _, xc = x.shape
    yc = g_p.shape[3]
    wp = yw + kw - 1
    offs_x, offs_g = _bwd_offsets(kh, kw, xc, yc, yh, yw, x.shape[1], x.shape[2], wt_flip.shape[0])
    for n in prange(mb):
        gw = _frame(yc * yh * wp, x.dtype).reshape((yc, yh, wp))
        i = np.int64(n)
        g_n, at = _pooled_grad(g_p, i, drop, mask, scale)
        _pool_grad(g_n, at, code[i], relu, avg, yw, pkh, pkw, psh, psw, gw)
        _bwd_image(x, i, gw, wt_flip, kh, kw, pt, pl, offs_x, offs_g, g_x, gk_part[n], gb_part[n], input_grad,
                   wide)


@njit(parallel=True, cache=True)
def _conv_pool_bwd_c1(g_p, code, x, wtap, kh, kw, pt, pl, yh, yw, relu, avg, pkh, pkw, psh, psw,
                      g_x, gk_part, gb_part, input_grad, wide):
    """The backward of _conv_pool_fwd, one input channel: numba_conv_bwd._conv_bwd_c1 with its
    g_y frame made from the pooled gradient g_p [mb, pyh, pyw, yc] and ``code``."""
    mb = x.shape[0]
    ycp, ntap5 = wtap.shape
    offs = _c1_offsets(kh, kw, ntap5, yh, yw)
    for n in prange(mb):
        gw = _frame(ycp * yh * yw, x.dtype).reshape((ycp, yh, yw))
        i = np.int64(n)
        _pool_grad(g_p, i, code[i], relu, avg, yw, pkh, pkw, psh, psw, gw)
        _bwd_c1_image(x, i, gw, wtap, kh, kw, pt, pl, offs, g_x, gk_part[n], gb_part[n], input_grad, wide)


@njit(parallel=True, cache=True)
def _conv_pool_bwd_drop_c1(g_p, code, drop, mask, scale, x, wtap, kh, kw, pt, pl, yh, yw, relu, avg, pkh,
                           pkw, psh, psw, g_x, gk_part, gb_part, input_grad, wide):
    """The backward of _conv_pool_fwd, one input channel: numba_conv_bwd._conv_bwd_c1 with its
    g_y frame made from the pooled gradient g_p [mb, pyh, pyw, yc] (with ``drop``: through the
    dropout's ``mask`` and ``scale`` first) and ``code``."""
    mb = x.shape[0]
    ycp, ntap5 = wtap.shape
    offs = _c1_offsets(kh, kw, ntap5, yh, yw)
    for n in prange(mb):
        gw = _frame(ycp * yh * yw, x.dtype).reshape((ycp, yh, yw))
        i = np.int64(n)
        g_n, at = _pooled_grad(g_p, i, drop, mask, scale)
        _pool_grad(g_n, at, code[i], relu, avg, yw, pkh, pkw, psh, psw, gw)
        _bwd_c1_image(x, i, gw, wtap, kh, kw, pt, pl, offs, g_x, gk_part[n], gb_part[n], input_grad, wide)
