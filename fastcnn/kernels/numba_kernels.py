"""The numba kernels: every hot loop nest, as ``@njit(parallel=True, cache=True)`` functions.

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
file alone). The Python side (choosing kernels, padding weights, allocating
outputs) is ``fastcnn.kernels.numba_host``; the ``numba`` backend runs these
functions JIT-compiled, the ``numba-aot`` backend the same functions compiled
ahead of time (``fastcnn.kernels.aot``). The kernels assume valid input.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic

# reassoc lets LLVM vectorize the dot-product reductions of g_k; contract allows FMA.
# No nnan/ninf: NaN and inf propagate as in NumPy.
_FAST = {"reassoc", "contract"}


def num_threads() -> int:
    """Threads the parallel kernels run on (``NUMBA_NUM_THREADS``, default: every core)."""
    return numba.get_num_threads()


# --------------------------------------------------------------------------
# helpers: NHWC image <-> planar padded image
# --------------------------------------------------------------------------

# An 8x8 transpose in three rounds of 8 two-input shuffles (unpack, pairs,
# 128-bit halves), emitted as LLVM ``shufflevector``: LLVM's vectorizers do not
# find shuffles in transpose loops, which otherwise move one element per cycle
# (docs/benchmarks.md, "SIMD transposes").
_UNPACK = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


@intrinsic
def _transpose8(typingctx, src, s0, s_stride, dst, d0, d_stride):
    """dst[d0 + j*d_stride + i] = src[s0 + i*s_stride + j] for i, j < 8 (1-D arrays, one dtype).

    No bounds checks: callers keep all 64 reads and writes inside the arrays.
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype):
        return None
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        src_v, s0_v, ss_v, dst_v, d0_v, ds_v = args
        src_data = context.make_array(signature.args[0])(context, builder, src_v).data
        dst_data = context.make_array(signature.args[3])(context, builder, dst_v).data
        vec = ir.VectorType(context.get_data_type(signature.args[0].dtype), 8)

        def row(base, start, stride, i):
            idx = builder.add(start, builder.mul(stride, ir.Constant(start.type, i)))
            return builder.bitcast(builder.gep(base, [idx]), vec.as_pointer())

        def shuffle(a, b, mask):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))

        r = [builder.load(row(src_data, s0_v, ss_v, i), align=1) for i in range(8)]
        t = [shuffle(r[i], r[i + 1], m) for i in range(0, 8, 2) for m in _UNPACK]
        u = [shuffle(t[a], t[a + 2], m) for a in (0, 1, 4, 5) for m in _PAIRS]
        for j in range(4):  # u[j] holds columns j and j + 4 of rows 0-3, u[j + 4] of rows 4-7
            lo, hi = (shuffle(u[j], u[j + 4], m) for m in _HALVES)
            builder.store(lo, row(dst_data, d0_v, ds_v, j), align=1)
            builder.store(hi, row(dst_data, d0_v, ds_v, j + 4), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _to_planar(src, n, pt, pl, dst):
    """Copy image ``n`` of ``src [mb, h, w, c]`` into ``dst [c, hp, wp]`` at offset (pt, pl).

    ``dst`` covers only the padded rows/columns that some window reads, so rows
    of ``src`` that fall beyond it are skipped; the rest of ``dst`` is zeroed.
    """
    _, h, w, c = src.shape
    _, hp, wp = dst.shape
    if pt > 0 or pl > 0 or hp > h or wp > w:  # else every element is written below
        dst[:] = 0
    ncol = min(w, wp - pl)  # source columns that land inside dst
    if c >= 8 and ncol >= 8:  # 8x8 tiles; a row's / the channels' last tile overlaps the one before
        sf = src.reshape(-1)
        df = dst.reshape(-1)
        plane = hp * wp
        for r in range(min(h, hp - pt)):
            s_row = (n * h + r) * w * c
            d_row = (r + pt) * wp + pl
            for col0 in range(0, ncol, 8):
                col = min(col0, ncol - 8)
                for ch0 in range(0, c, 8):
                    ch = min(ch0, c - 8)
                    _transpose8(sf, s_row + col * c + ch, c, df, ch * plane + d_row + col, plane)
        return
    for r in range(min(h, hp - pt)):
        srow = src[n, r]  # [w, c]; 1-D/2-D views keep the index arithmetic simple for LLVM
        for ch in range(c):
            drow = dst[ch, r + pt, pl : pl + ncol]
            for col in range(ncol):
                drow[col] = srow[col, ch]


@njit(cache=True)
def _from_frame(frame, width, top, left, dst, n):
    """dst[n, r, col, ch] = frame[ch, (r + top)*width + col + left]: crop a flat planar frame into NHWC."""
    _, h, w, c = dst.shape
    if c >= 8 and w >= 8:  # 8x8 tiles; a row's / the channels' last tile overlaps the one before
        length = frame.shape[1]
        ff = frame.reshape(-1)
        df = dst.reshape(-1)
        for r in range(h):
            start = (r + top) * width + left
            d_row = (n * h + r) * w * c
            for col0 in range(0, w, 8):
                col = min(col0, w - 8)
                for ch0 in range(0, c, 8):
                    ch = min(ch0, c - 8)
                    _transpose8(ff, ch * length + start + col, length, df, d_row + col * c + ch, c)
        return
    for r in range(h):
        drow = dst[n, r]  # [w, c]
        start = (r + top) * width + left
        if c < 8:  # few channels: contiguous reads of each frame row
            for ch in range(c):
                frow = frame[ch, start : start + w]
                for col in range(w):
                    drow[col, ch] = frow[col]
        else:  # many channels: contiguous writes of each NHWC pixel
            for col in range(w):
                for ch in range(c):
                    drow[col, ch] = frame[ch, start + col]


@njit(cache=True)
def _repad(src, w, top, left, dst):
    """dst[ch, r + top, left : left + w] = src[ch, r, :w], zeros elsewhere: re-pad a planar frame.

    Row copies instead of a second NHWC -> planar transpose (which costs ~1 cycle per element).
    """
    dst[:] = 0
    for ch in range(src.shape[0]):
        for r in range(src.shape[1]):
            drow = dst[ch, r + top, left : left + w]
            srow = src[ch, r, :w]
            for col in range(w):
                drow[col] = srow[col]


@njit(cache=True)
def _shifted(src, kw, w):
    """dst[kx, r, c] = src[r, c + kx] for c < w: kw column-shifted copies of a planar frame.

    With one input channel, tap (ky, kx) of output pixel p = oy*w + ox then reads
    dst.flat[p + kx*plane + ky*w]: a flat correlation over frames only w = yw wide, so no
    work is spent on the kw - 1 columns per row that a wp-wide frame computes and drops.
    """
    dst = np.empty((kw, src.shape[0], w), src.dtype)
    for kx in range(kw):
        for r in range(src.shape[0]):
            for col in range(w):
                dst[kx, r, col] = src[r, col + kx]
    return dst


@njit(cache=True, fastmath=_FAST)
def _add_to(o, s):
    """o += s (1-D, same length)."""
    for p in range(o.shape[0]):
        o[p] += s[p]


@njit(cache=True)
def _sum_batch(part):
    """part [mb, m] -> [m], adding rows in order 0, 1, ... (deterministic)."""
    out = part[0].copy()
    for n in range(1, part.shape[0]):
        for j in range(part.shape[1]):
            out[j] += part[n, j]
    return out




# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


# Stride 1 runs as a "flat" correlation: a planar frame [chn, rows, width] is
# one 1-D array, so output pixel p = oy*width + ox reads src[p + off(tap)] with
# off(ky, kx, ci) = ci*plane + ky*width + kx, the same shift for every pixel.
# One tap over a block of pixels is then a unit-stride AXPY, and grouping 4
# taps x 2 output channels per pass keeps the FMA units busy (a single AXPY is
# bound by the store of o[p]). Columns ox >= yw of each frame row are computed
# but never read back (a few % of waste for 3x3 kernels).

_BLOCK = 1024  # pixels per pass: a 4 KiB slice of each output row stays in L1 across all taps


def _host_has_avx512() -> bool:
    """True if this CPU has AVX-512 (32 vector registers), False for AVX2 and older (16)."""
    from llvmlite import binding

    try:
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:  # feature detection unavailable: assume the smaller register file
        return False


# Register blocks of the g_k dot products, chosen per CPU at import time. With 32
# vector registers the 4 x 6 / 5 x 3 blocks keep every accumulator in a register;
# with 16 (AVX2) they spill about half of them to the stack on every iteration
# (measured 2x slower), so AVX2 CPUs run 3 x 3 / 5 x 2 blocks instead (9 and 10
# accumulators, no spills). Both compute each dot product in the same order, so
# g_k has the same bits either way. The forward with several channels also switches,
# from _corr's 4 taps x 2 channels to _corr4x3 (see NumbaHost._fwd4x3; its sums are grouped
# differently, so y can differ in the last bit between the two kinds of CPU).
# (A compiled kernel reads the flag as a constant; numba's cache is keyed on the
# CPU, so it never crosses machines.)
_WIDE = _host_has_avx512()


@njit(cache=True, fastmath=_FAST)
def _axpy1(o, s0, w0):
    """o += w0 * s0 (1-D, same length)."""
    for p in range(o.shape[0]):
        o[p] += w0 * s0[p]


@njit(cache=True, fastmath=_FAST)
def _axpy4(o, s0, s1, s2, s3, w0, w1, w2, w3):
    """o += four taps; helpers take separate 1-D views so LLVM vectorizes the loop."""
    for p in range(o.shape[0]):
        o[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]


@njit(cache=True, fastmath=_FAST)
def _axpy8(o, s0, s1, s2, s3, s4, s5, s6, s7, w0, w1, w2, w3, w4, w5, w6, w7):
    """o += eight taps: a lone output channel needs more taps per store to stay FMA bound."""
    for p in range(o.shape[0]):
        o[p] += (w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]
                 + w4 * s4[p] + w5 * s5[p] + w6 * s6[p] + w7 * s7[p])


@njit(cache=True, fastmath=_FAST)
def _axpy4x2(o, q, s0, s1, s2, s3, w0, w1, w2, w3, v0, v1, v2, v3):
    """o += taps * w, q += taps * v: each tap value loaded once for two output channels."""
    for p in range(o.shape[0]):
        a = s0[p]
        b = s1[p]
        c = s2[p]
        d = s3[p]
        o[p] += w0 * a + w1 * b + w2 * c + w3 * d
        q[p] += v0 * a + v1 * b + v2 * c + v3 * d


@njit(cache=True, fastmath=_FAST)
def _dot4x6(g, s, acc):
    """acc[6*t + c] = sum_p s[t][p] * g[c][p] for 4 taps t (tuple s) and 6 output channels c (tuple g).

    24 accumulators stay in registers (AVX-512 has 32): 10 vector loads per 24 FMAs.
    Whatever ``acc`` held before is overwritten (it starts as fresh ``np.empty`` memory).
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a03 = a04 = a05 = a10 = a11 = a12 = a13 = a14 = a15 = acc[0]
    a20 = a21 = a22 = a23 = a24 = a25 = a30 = a31 = a32 = a33 = a34 = a35 = a00
    g0, g1, g2, g3, g4, g5 = g
    s0, s1, s2, s3 = s
    for p in range(g0.shape[0]):
        u0 = g0[p]
        u1 = g1[p]
        u2 = g2[p]
        u3 = g3[p]
        u4 = g4[p]
        u5 = g5[p]
        x0 = s0[p]
        x1 = s1[p]
        x2 = s2[p]
        x3 = s3[p]
        a00 += x0 * u0
        a01 += x0 * u1
        a02 += x0 * u2
        a03 += x0 * u3
        a04 += x0 * u4
        a05 += x0 * u5
        a10 += x1 * u0
        a11 += x1 * u1
        a12 += x1 * u2
        a13 += x1 * u3
        a14 += x1 * u4
        a15 += x1 * u5
        a20 += x2 * u0
        a21 += x2 * u1
        a22 += x2 * u2
        a23 += x2 * u3
        a24 += x2 * u4
        a25 += x2 * u5
        a30 += x3 * u0
        a31 += x3 * u1
        a32 += x3 * u2
        a33 += x3 * u3
        a34 += x3 * u4
        a35 += x3 * u5
    acc[0], acc[1], acc[2], acc[3], acc[4], acc[5] = a00, a01, a02, a03, a04, a05
    acc[6], acc[7], acc[8], acc[9], acc[10], acc[11] = a10, a11, a12, a13, a14, a15
    acc[12], acc[13], acc[14], acc[15], acc[16], acc[17] = a20, a21, a22, a23, a24, a25
    acc[18], acc[19], acc[20], acc[21], acc[22], acc[23] = a30, a31, a32, a33, a34, a35


@njit(cache=True, fastmath=_FAST)
def _dot3x3(g, s, acc):
    """acc[3*t + c] = sum_p s[t][p] * g[c][p] for 3 taps t (tuple s) and 3 output channels c (tuple g).

    _dot4x6 for 16 vector registers (AVX2): 9 accumulators + 6 loaded vectors, no spills.
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = acc[0]
    g0, g1, g2 = g
    s0, s1, s2 = s
    for p in range(g0.shape[0]):
        u0 = g0[p]
        u1 = g1[p]
        u2 = g2[p]
        x0 = s0[p]
        x1 = s1[p]
        x2 = s2[p]
        a00 += x0 * u0
        a01 += x0 * u1
        a02 += x0 * u2
        a10 += x1 * u0
        a11 += x1 * u1
        a12 += x1 * u2
        a20 += x2 * u0
        a21 += x2 * u1
        a22 += x2 * u2
    acc[0], acc[1], acc[2], acc[3], acc[4] = a00, a01, a02, a10, a11
    acc[5], acc[6], acc[7], acc[8] = a12, a20, a21, a22


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
def _views4(src, offs, j, p0, n):
    """The n-long windows of src that taps j..j+3 read for pixels p0..p0+n-1."""
    d0 = offs[j] + p0
    d1 = offs[j + 1] + p0
    d2 = offs[j + 2] + p0
    d3 = offs[j + 3] + p0
    return src[d0 : d0 + n], src[d1 : d1 + n], src[d2 : d2 + n], src[d3 : d3 + n]


@njit(cache=True, fastmath=_FAST)
def _corr(src, offs, wt, bias, out):
    """out[co, p] = bias[co] + sum_j wt[j, co] * src[p + offs[j]] for every p < out.shape[1]."""
    ntap, yc = wt.shape
    length = out.shape[1]
    for p0 in range(0, length, _BLOCK):
        n = min(_BLOCK, length - p0)
        for co in range(0, yc, 2):
            pair = co + 1 < yc
            o = out[co, p0 : p0 + n]
            o[:] = bias[co]
            q = out[co + 1, p0 : p0 + n] if pair else o
            if pair:
                q[:] = bias[co + 1]
            j = 0
            while pair and j + 4 <= ntap:
                s0, s1, s2, s3 = _views4(src, offs, j, p0, n)
                _axpy4x2(o, q, s0, s1, s2, s3, wt[j, co], wt[j + 1, co], wt[j + 2, co], wt[j + 3, co],
                         wt[j, co + 1], wt[j + 1, co + 1], wt[j + 2, co + 1], wt[j + 3, co + 1])
                j += 4
            while not pair and j + 8 <= ntap:
                s0, s1, s2, s3 = _views4(src, offs, j, p0, n)
                s4, s5, s6, s7 = _views4(src, offs, j + 4, p0, n)
                _axpy8(o, s0, s1, s2, s3, s4, s5, s6, s7, wt[j, co], wt[j + 1, co], wt[j + 2, co],
                       wt[j + 3, co], wt[j + 4, co], wt[j + 5, co], wt[j + 6, co], wt[j + 7, co])
                j += 8
            for jj in range(j, ntap):  # the last few taps
                d0 = offs[jj] + p0
                _axpy1(o, src[d0 : d0 + n], wt[jj, co])
                if pair:
                    _axpy1(q, src[d0 : d0 + n], wt[jj, co + 1])


@njit(cache=True, fastmath=_FAST)
def _corr_grad(src, offs, g, gk):
    """gk[j, co] = sum_p g[co, p] * src[p + offs[j]]: the weight gradient of _corr.

    4 taps x 6 channels per pass over the whole frame (no pixel blocks: one
    horizontal reduction per pass; 1024-pixel blocks measured ~20 % slower, and
    4 x 4, 3 x 6, 5 x 3, 6 x 4, 8 x 4, 3 x 8 blocks slower than 4 x 6, all on AVX-512).
    Past the last tap / channel the last one is re-read; those sums are dropped.
    Without AVX-512 it runs _corr_grad3x3 (see _WIDE).
    """
    if not _WIDE:
        _corr_grad3x3(src, offs, g, gk)
        return
    ntap, yc = gk.shape
    length = g.shape[1]
    acc = np.empty(24, gk.dtype)
    offs_pad = np.empty(ntap + 3, np.int64)
    offs_pad[:ntap] = offs
    offs_pad[ntap:] = offs[ntap - 1]
    last = yc - 1
    for co in range(0, yc, 6):
        gg = (g[co], g[min(co + 1, last)], g[min(co + 2, last)], g[min(co + 3, last)],
              g[min(co + 4, last)], g[min(co + 5, last)])
        for j in range(0, ntap, 4):
            d0, d1, d2, d3 = offs_pad[j], offs_pad[j + 1], offs_pad[j + 2], offs_pad[j + 3]
            ss = (src[d0 : d0 + length], src[d1 : d1 + length], src[d2 : d2 + length], src[d3 : d3 + length])
            _dot4x6(gg, ss, acc)
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
    length = g.shape[1]
    acc = np.empty(9, gk.dtype)
    offs_pad = np.empty(ntap + 2, np.int64)
    offs_pad[:ntap] = offs
    offs_pad[ntap:] = offs[ntap - 1]
    last = yc - 1
    for co in range(0, yc, 3):
        gg = (g[co], g[min(co + 1, last)], g[min(co + 2, last)])
        for j in range(0, ntap, 3):
            d0, d1, d2 = offs_pad[j], offs_pad[j + 1], offs_pad[j + 2]
            ss = (src[d0 : d0 + length], src[d1 : d1 + length], src[d2 : d2 + length])
            _dot3x3(gg, ss, acc)
            for t in range(min(3, ntap - j)):
                for c in range(min(3, yc - co)):
                    gk[j + t, co + c] = acc[3 * t + c]


@njit(cache=True, fastmath=_FAST)
def _axpy4x3(o0, o1, o2, s0, s1, s2, s3, w):
    """o_c[p] += sum_t w[t, c] * s_t[p] for 4 taps t and 3 output channels c."""
    w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
    w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
    w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    w30, w31, w32 = w[3, 0], w[3, 1], w[3, 2]
    for p in range(o0.shape[0]):
        a = s0[p]
        b = s1[p]
        c = s2[p]
        d = s3[p]
        o0[p] += w00 * a + w10 * b + w20 * c + w30 * d
        o1[p] += w01 * a + w11 * b + w21 * c + w31 * d
        o2[p] += w02 * a + w12 * b + w22 * c + w32 * d


@njit(cache=True, fastmath=_FAST)
def _corr4x3(src, offs, wt, bias, out):
    """out[co, p] = bias[co] + sum_j wt[j, co] * src[p + offs[j]]: _corr with 4 taps x 3 channels per pass.

    wt [ntap4, xcp], offs [ntap4] and bias [xcp] are padded to multiples of 4 taps / 3 channels
    (zero weights and bias, offset 0). Whole-frame passes: 1024-pixel blocks measured slower.
    Runs g_x everywhere, and the forward on CPUs without AVX-512 (see NumbaHost._forward_blocked).
    """
    ntap4, xcp = wt.shape
    length = out.shape[1]
    for co in range(0, xcp, 3):
        o0 = out[co]
        o1 = out[co + 1]
        o2 = out[co + 2]
        o0[:] = bias[co]
        o1[:] = bias[co + 1]
        o2[:] = bias[co + 2]
        for j in range(0, ntap4, 4):
            s0, s1, s2, s3 = _views4(src, offs, j, 0, length)
            _axpy4x3(o0, o1, o2, s0, s1, s2, s3, wt[j : j + 4, co : co + 3])


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
        xs = np.empty((xc, hp + 1, wp), x.dtype)  # +1 row: slack for the garbage columns' reads
        _to_planar(x, n, pt, pl, xs)
        out = np.empty((yc, yh * wp), y.dtype)
        _corr(xs.reshape(-1), offs, wt, b, out)
        _from_frame(out, wp, 0, 0, y, n)


@njit(parallel=True, cache=True)
def _conv_bwd(g_y, x, wt_flip, kh, kw, pt, pl, g_x, gk_part, gb_part, input_grad):
    """Stride 1, per image n: g_x[n], and partial sums gk_part[n] [xc*kh*kw, yc], gb_part[n].

    g_x is the full correlation of g_y with the flipped kernel, in tap order
    (co, ky, kx): wt_flip[(co*kh + ky)*kw + kx, ci] = k[kh-1-ky, kw-1-kx, ci, co],
    zero padded to a multiple of 4 taps and 3 channels (see _corr4x3); cropped to the input.
    gk_part rows are in tap order (ci, ky, kx).
    """
    mb, xh, xw, xc = x.shape
    yc = g_y.shape[3]
    _, yh, yw, _ = g_y.shape
    hp = yh + kh - 1
    wp = yw + kw - 1
    hq = hp + kh - 1  # g_y frame for the full correlation: kh-1 / kw-1 zeros on every side
    wq = wp + kw - 1
    offs_x = _tap_offsets(kh, kw, xc, (hp + 1) * wp, wp)
    ntap4, xcp = wt_flip.shape
    offs_g = np.zeros(ntap4, np.int64)  # padding taps read offset 0 with zero weights
    offs_g[: yc * kh * kw] = _tap_offsets(kh, kw, yc, (hq + 1) * wq, wq)
    zero = np.zeros(xcp, x.dtype)  # g_x has no bias
    for n in prange(mb):
        xs = np.empty((xc, hp + 1, wp), x.dtype)
        _to_planar(x, n, pt, pl, xs)
        gw = np.empty((yc, yh, wp), x.dtype)  # g_y in the x frame's width, zeros at ox >= yw
        _to_planar(g_y, n, 0, 0, gw)
        gw2 = gw.reshape(yc, yh * wp)
        for co in range(yc):
            gb_part[n, co] = _vsum(gw2[co])
        _corr_grad(xs.reshape(-1), offs_x, gw2, gk_part[n])
        if not input_grad:
            continue
        gq = np.empty((yc, hq + 1, wq), x.dtype)
        _repad(gw, yw, kh - 1, kw - 1, gq)  # from gw: row copies, not a second transpose
        out = np.empty((xcp, hp * wq), x.dtype)
        _corr4x3(gq.reshape(-1), offs_g, wt_flip, zero, out)
        _from_frame(out, wq, pt, pl, g_x, n)  # crop the padding away


# One input channel (SimpleConvNet: 1 -> 30, 5x5) gets its own backward. g_x as a
# full correlation over 30 zero-padded g_y planes wastes ~1/3 of its work on the
# padding and, with one output channel, cannot share loads across channels. Instead:
# cols[t, p] = sum_co k[t, co] * g[co, p] is a small GEMM (taps x channels, 5 x 5
# per pass: 10 vector loads + 5 stores per 25 FMAs), then col2im as a gather: for each kx,
# h_kx[q] = sum_ky cols[(ky, kx), q - ky*yw], and g_x[r, c + kx] += h_kx[r, c]. g_k uses 5 taps x 3
# channels per pass (15 accumulators in registers; 5 x 2 on AVX2, see _WIDE). Channel and tap
# counts are zero padded to the block sizes, so no remainder loops. Frames are yw wide, not
# yw + kw - 1: x is read through kw column-shifted copies (_shifted), so g_k and the GEMM
# skip the kw - 1 dropped columns per row (14 % of their work for 5x5 on 28x28).


@njit(cache=True, fastmath=_FAST)
def _dot5x3(g0, g1, g2, s0, s1, s2, s3, s4, acc):
    """acc[3*t + c] = sum_p s_t[p] * g_c[p] for 5 taps t and 3 output channels c.

    Whatever ``acc`` held before is overwritten (it may be fresh ``np.empty`` memory:
    starting from ``acc[0] * 0`` would turn a NaN left there into NaN sums).
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = acc[0]
    a30 = a31 = a32 = a40 = a41 = a42 = a00
    for p in range(g0.shape[0]):
        u = g0[p]
        v = g1[p]
        w = g2[p]
        x0 = s0[p]
        x1 = s1[p]
        x2 = s2[p]
        x3 = s3[p]
        x4 = s4[p]
        a00 += x0 * u
        a01 += x0 * v
        a02 += x0 * w
        a10 += x1 * u
        a11 += x1 * v
        a12 += x1 * w
        a20 += x2 * u
        a21 += x2 * v
        a22 += x2 * w
        a30 += x3 * u
        a31 += x3 * v
        a32 += x3 * w
        a40 += x4 * u
        a41 += x4 * v
        a42 += x4 * w
    acc[0], acc[1], acc[2], acc[3], acc[4] = a00, a01, a02, a10, a11
    acc[5], acc[6], acc[7], acc[8], acc[9] = a12, a20, a21, a22, a30
    acc[10], acc[11], acc[12], acc[13], acc[14] = a31, a32, a40, a41, a42


@njit(cache=True, fastmath=_FAST)
def _dot5x2(g0, g1, s0, s1, s2, s3, s4, acc):
    """acc[2*t + c] = sum_p s_t[p] * g_c[p]: _dot5x3 for 16 vector registers (AVX2, see _WIDE).

    10 accumulators + 7 loaded vectors fit; _dot5x3 spills 4 of its 15 there.
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = acc[0]
    for p in range(g0.shape[0]):
        u = g0[p]
        v = g1[p]
        x0 = s0[p]
        x1 = s1[p]
        x2 = s2[p]
        x3 = s3[p]
        x4 = s4[p]
        a00 += x0 * u
        a01 += x0 * v
        a10 += x1 * u
        a11 += x1 * v
        a20 += x2 * u
        a21 += x2 * v
        a30 += x3 * u
        a31 += x3 * v
        a40 += x4 * u
        a41 += x4 * v
    acc[0], acc[1], acc[2], acc[3], acc[4] = a00, a01, a10, a11, a20
    acc[5], acc[6], acc[7], acc[8], acc[9] = a21, a30, a31, a40, a41


@njit(cache=True, fastmath=_FAST)
def _mac5x5(i0, i1, i2, i3, i4, o0, o1, o2, o3, o4, w, first):
    """o_c[p] (+)= sum_t w[t, c] * i_t[p], 5 inputs x 5 outputs; first: overwrite o."""
    w00, w01, w02, w03, w04 = w[0, 0], w[0, 1], w[0, 2], w[0, 3], w[0, 4]
    w10, w11, w12, w13, w14 = w[1, 0], w[1, 1], w[1, 2], w[1, 3], w[1, 4]
    w20, w21, w22, w23, w24 = w[2, 0], w[2, 1], w[2, 2], w[2, 3], w[2, 4]
    w30, w31, w32, w33, w34 = w[3, 0], w[3, 1], w[3, 2], w[3, 3], w[3, 4]
    w40, w41, w42, w43, w44 = w[4, 0], w[4, 1], w[4, 2], w[4, 3], w[4, 4]
    if first:
        for p in range(o0.shape[0]):
            a = i0[p]
            b = i1[p]
            c = i2[p]
            d = i3[p]
            e = i4[p]
            o0[p] = w00 * a + w10 * b + w20 * c + w30 * d + w40 * e
            o1[p] = w01 * a + w11 * b + w21 * c + w31 * d + w41 * e
            o2[p] = w02 * a + w12 * b + w22 * c + w32 * d + w42 * e
            o3[p] = w03 * a + w13 * b + w23 * c + w33 * d + w43 * e
            o4[p] = w04 * a + w14 * b + w24 * c + w34 * d + w44 * e
    else:
        for p in range(o0.shape[0]):
            a = i0[p]
            b = i1[p]
            c = i2[p]
            d = i3[p]
            e = i4[p]
            o0[p] += w00 * a + w10 * b + w20 * c + w30 * d + w40 * e
            o1[p] += w01 * a + w11 * b + w21 * c + w31 * d + w41 * e
            o2[p] += w02 * a + w12 * b + w22 * c + w32 * d + w42 * e
            o3[p] += w03 * a + w13 * b + w23 * c + w33 * d + w43 * e
            o4[p] += w04 * a + w14 * b + w24 * c + w34 * d + w44 * e


@njit(cache=True, fastmath=_FAST)
def _vsum(v):
    """sum(v) with reassociation (SIMD): the same bits on every call."""
    s = v[0]
    for p in range(1, v.shape[0]):
        s += v[p]
    return s


@njit(parallel=True, cache=True)
def _conv_bwd_c1(g_y, x, wtap, kh, kw, pt, pl, g_x, gk_part, gb_part, input_grad):
    """Stride 1, one input channel, per image n: g_x[n], gk_part[n] [ntap5, ycp], gb_part[n].

    wtap [ycp, ntap5] = k[ky, kx, 0, co] at [co, ky*kw + kx], zero padded to
    ycp (a multiple of NumbaHost.c1_chn: 15, or 10 without AVX-512) channels and ntap5 (a multiple of 5) taps.
    """
    mb = x.shape[0]
    _, yh, yw, yc = g_y.shape
    ycp, ntap5 = wtap.shape
    hp = yh + kh - 1
    wp = yw + kw - 1
    L = yh * yw  # output pixels of one frame (frames are yw wide, see _shifted)
    M = hp * yw  # a column-shifted x frame; also one kx slice of g_x before the shift
    offs = np.zeros(ntap5, np.int64)  # padding taps read offset 0 (their sums are dropped / zero)
    for ky in range(kh):
        for kx in range(kw):
            offs[ky * kw + kx] = kx * M + ky * yw
    pad = (kh - 1) * yw  # largest row shift
    for n in prange(mb):
        xs = np.empty((1, hp + 1, wp), x.dtype)
        _to_planar(x, n, pt, pl, xs)
        xf = _shifted(xs[0, :hp], kw, yw).reshape(-1)
        gw = np.empty((ycp, yh, yw), x.dtype)
        _to_planar(g_y, n, 0, 0, gw[:yc])
        gw[yc:] = 0
        g2 = gw.reshape(ycp, L)
        for co in range(yc):
            gb_part[n, co] = _vsum(g2[co])
        # g_k: 5 taps x 3 channels per pass over the frame (5 x 2 without AVX-512, see _WIDE)
        gk = gk_part[n]
        acc = np.empty(15, x.dtype)
        for j in range(0, ntap5, 5):
            d0, d1, d2, d3, d4 = offs[j], offs[j + 1], offs[j + 2], offs[j + 3], offs[j + 4]
            if _WIDE:
                for co in range(0, ycp, 3):
                    _dot5x3(g2[co], g2[co + 1], g2[co + 2], xf[d0 : d0 + L], xf[d1 : d1 + L],
                            xf[d2 : d2 + L], xf[d3 : d3 + L], xf[d4 : d4 + L], acc)
                    for t in range(5):
                        for c in range(3):
                            gk[j + t, co + c] = acc[3 * t + c]
            else:
                for co in range(0, ycp, 2):
                    _dot5x2(g2[co], g2[co + 1], xf[d0 : d0 + L], xf[d1 : d1 + L],
                            xf[d2 : d2 + L], xf[d3 : d3 + L], xf[d4 : d4 + L], acc)
                    for t in range(5):
                        for c in range(2):
                            gk[j + t, co + c] = acc[2 * t + c]
        if not input_grad:
            continue
        # g_x: cols = GEMM over channels, then col2im as a gather per kx, then the kx shifts
        cols = np.empty((ntap5, pad + M), x.dtype)
        for t in range(ntap5):
            cols[t, :pad] = 0
            cols[t, pad + L :] = 0
        for t in range(0, ntap5, 5):
            for co in range(0, ycp, 5):
                _mac5x5(g2[co], g2[co + 1], g2[co + 2], g2[co + 3], g2[co + 4],
                        cols[t, pad : pad + L], cols[t + 1, pad : pad + L], cols[t + 2, pad : pad + L],
                        cols[t + 3, pad : pad + L], cols[t + 4, pad : pad + L],
                        wtap[co : co + 5, t : t + 5], co == 0)
        h = np.zeros((kw, M), x.dtype)
        for t in range(kh * kw):  # h[kx, q] += cols[t, pad + q - ky*yw]
            a = pad - (t // kw) * yw
            _add_to(h[t % kw], cols[t, a : a + M])
        out = np.zeros((1, hp, wp), x.dtype)
        for kx in range(kw):  # frame[r, c + kx] += h[kx, r*yw + c]
            for r in range(hp):
                _add_to(out[0, r, kx : kx + yw], h[kx, r * yw : r * yw + yw])
        _from_frame(out.reshape(1, -1), wp, pt, pl, g_x, n)


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
            o0 = out[co, p0 : p0 + n]
            o1 = out[co + 1, p0 : p0 + n]
            o2 = out[co + 2, p0 : p0 + n]
            o3 = out[co + 3, p0 : p0 + n]
            o4 = out[co + 4, p0 : p0 + n]
            for j in range(0, ntap5, 5):
                d0, d1, d2 = offs[j] + p0, offs[j + 1] + p0, offs[j + 2] + p0
                d3, d4 = offs[j + 3] + p0, offs[j + 4] + p0
                _mac5x5(src[d0 : d0 + n], src[d1 : d1 + n], src[d2 : d2 + n], src[d3 : d3 + n],
                        src[d4 : d4 + n], o0, o1, o2, o3, o4, wt[j : j + 5, co : co + 5], j == 0)
            for c in range(5):
                if co + c < bias.shape[0]:
                    _add_scalar(out[co + c, p0 : p0 + n], bias[co + c])


@njit(cache=True, fastmath=_FAST)
def _add_scalar(o, v):
    """o += v."""
    for p in range(o.shape[0]):
        o[p] += v


@njit(parallel=True, cache=True)
def _conv_fwd_blocked(x, offs, wt, b, kh, kw, pt, pl, y, five):
    """_conv_fwd through a blocked correlation (offs/wt/b padded, see NumbaHost._forward_blocked):
    _corr5 (5 taps x 5 channels) if ``five``, else _corr4x3 (4 taps x 3 channels)."""
    mb, _, _, xc = x.shape
    ycp = wt.shape[1]
    _, yh, yw, _ = y.shape
    hp = yh + kh - 1
    wp = yw + kw - 1
    for n in prange(mb):
        xs = np.empty((xc, hp + 1, wp), x.dtype)
        _to_planar(x, n, pt, pl, xs)
        out = np.empty((ycp, yh * wp), y.dtype)
        if five:
            _corr5(xs.reshape(-1), offs, wt, b, out)
        else:
            _corr4x3(xs.reshape(-1), offs, wt, b, out)
        _from_frame(out, wp, 0, 0, y, n)


















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








# --------------------------------------------------------------------------
# pooling (no padding; windows that do not fit were dropped by the geometry)
# --------------------------------------------------------------------------


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


@njit(parallel=True, cache=True)
def _adam(p, g, m, v, lr_t, beta1, beta2, eps):
    c1 = 1 - beta1
    c2 = 1 - beta2
    for i in prange(p.size):
        gi = g[i]
        mi = beta1 * m[i] + c1 * gi
        vi = beta2 * v[i] + c2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)










