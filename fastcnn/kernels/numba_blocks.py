"""Register blocks of the numba conv kernels: their innermost SIMD loops.

Each block is one unit-stride pass over 1-D views (the only loops LLVM
vectorizes here, see ``numba_simd``) for a fixed number of taps x channels, so
each loaded vector feeds several FMAs and the sums stay in vector registers.

- AXPY blocks, ``o_c[p] += sum_t w[t, c] * s_t[p]``: the forward and ``g_x``
  correlations (``_axpy4x2`` / ``_axpy8`` / ``_axpy1`` in ``_corr``, ``_axpy4x3`` in
  ``_corr4x3``, ``_mac5x5`` in ``_corr5`` and the one-channel ``g_x`` GEMM).
- Dot blocks, ``acc[t, c] = sum_p s_t[p] * g_c[p]`` over a whole frame: ``g_k``.
  Two sizes each, picked by the backward kernels' ``wide`` argument: ``_dot4x6`` /
  ``_dot5x3`` (24 / 15 accumulators) for 32 vector registers (AVX-512), ``_dot3x3`` /
  ``_dot5x2`` (9 / 10) for 16 (AVX2), where the larger ones spill about half their
  accumulators to the stack (measured 2x slower). Both sizes add the same products
  into each sum, but LLVM vectorizes each reduction its own way: on AVX-512,
  ``_dot3x3`` gets an extra 4-wide epilogue loop that ``_dot4x6`` lacks, so the
  several-channel ``g_k`` can differ in the last bits between the two; ``_dot5x3``
  and ``_dot5x2`` give the same bits (tests/test_numba_backend.py).

The blocks take whole arrays and offsets, not views: numba counts references on every array passed to
a function, and a call with ten views paid about 120 ns in those counts, half of a pass over
a 624-pixel frame (24x24, the flowers network's third conv) and 6 % of one over 9,408; with
offsets a pass costs 15-20 ns more than its loop (AMD Zen 5; docs/benchmarks.md, "The
passes' fixed cost", item 4). The blocks spell out their weight scalars and views one by one and
repeat each other's per-channel expressions on purpose: the same expression per channel is what
keeps the two variants' bits equal (tests/test_fused.py asserts it).
"""

from __future__ import annotations

from numba import njit

from .numba_cache import share_cache_stamp
from .numba_simd import _FAST

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)


# --------------------------------------------------------------------------
# AXPY blocks: forward and g_x correlations
# --------------------------------------------------------------------------


@njit(cache=True, fastmath=_FAST)
def _axpy1(out, co, p0, n, src, d0, w0):
    """out[co, p0 + p] += w0 * src[d0 + p] for p < n."""
    o = out[co, p0 : p0 + n]
    s0 = src[d0 : d0 + n]
    for p in range(n):
        o[p] += w0 * s0[p]


@njit(cache=True, fastmath=_FAST)
def _axpy8(out, co, p0, n, src, d0, d1, d2, d3, d4, d5, d6, d7, w, wr):
    """out[co, p0 + p] += sum_t w[wr + t, co] * src[d_t + p], eight taps t: a lone output channel needs
    more taps per store to stay FMA bound."""
    w0, w1, w2, w3 = w[wr, co], w[wr + 1, co], w[wr + 2, co], w[wr + 3, co]
    w4, w5, w6, w7 = w[wr + 4, co], w[wr + 5, co], w[wr + 6, co], w[wr + 7, co]
    o = out[co, p0 : p0 + n]
    s0, s1, s2, s3 = src[d0 : d0 + n], src[d1 : d1 + n], src[d2 : d2 + n], src[d3 : d3 + n]
    s4, s5, s6, s7 = src[d4 : d4 + n], src[d5 : d5 + n], src[d6 : d6 + n], src[d7 : d7 + n]
    for p in range(n):
        o[p] += (w0 * s0[p] + w1 * s1[p] + w2 * s2[p] + w3 * s3[p]
                 + w4 * s4[p] + w5 * s5[p] + w6 * s6[p] + w7 * s7[p])


@njit(cache=True, fastmath=_FAST)
def _axpy4x2(out, co, p0, n, src, d0, d1, d2, d3, w, wr):
    """out[co + c, p0 + p] += sum_t w[wr + t, co + c] * src[d_t + p] for 4 taps t and 2 output channels c:
    each tap value loaded once for both."""
    w0, w1, w2, w3 = w[wr, co], w[wr + 1, co], w[wr + 2, co], w[wr + 3, co]
    v0, v1, v2, v3 = w[wr, co + 1], w[wr + 1, co + 1], w[wr + 2, co + 1], w[wr + 3, co + 1]
    o = out[co, p0 : p0 + n]
    q = out[co + 1, p0 : p0 + n]
    s0, s1, s2, s3 = src[d0 : d0 + n], src[d1 : d1 + n], src[d2 : d2 + n], src[d3 : d3 + n]
    for p in range(n):
        a = s0[p]
        b = s1[p]
        c = s2[p]
        d = s3[p]
        o[p] += w0 * a + w1 * b + w2 * c + w3 * d
        q[p] += v0 * a + v1 * b + v2 * c + v3 * d


@njit(cache=True, fastmath=_FAST)
def _axpy4x6(out, co, p0, n, src, d0, d1, d2, d3, w, wr, wc):
    """out[co + c, p0 + p] += sum_t w[wr + t, wc + c] * src[d_t + p] for p < n, 4 taps t and 6 output
    channels c: each channel the expression of _axpy4x3 (the same bits), one pass for six channels
    (for 32 vector registers). Whole arrays and offsets, not views: see the module docstring."""
    w00, w01, w02 = w[wr, wc], w[wr, wc + 1], w[wr, wc + 2]
    w03, w04, w05 = w[wr, wc + 3], w[wr, wc + 4], w[wr, wc + 5]
    w10, w11, w12 = w[wr + 1, wc], w[wr + 1, wc + 1], w[wr + 1, wc + 2]
    w13, w14, w15 = w[wr + 1, wc + 3], w[wr + 1, wc + 4], w[wr + 1, wc + 5]
    w20, w21, w22 = w[wr + 2, wc], w[wr + 2, wc + 1], w[wr + 2, wc + 2]
    w23, w24, w25 = w[wr + 2, wc + 3], w[wr + 2, wc + 4], w[wr + 2, wc + 5]
    w30, w31, w32 = w[wr + 3, wc], w[wr + 3, wc + 1], w[wr + 3, wc + 2]
    w33, w34, w35 = w[wr + 3, wc + 3], w[wr + 3, wc + 4], w[wr + 3, wc + 5]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    o0 = out[co, p0 : p0 + n]
    o1 = out[co + 1, p0 : p0 + n]
    o2 = out[co + 2, p0 : p0 + n]
    o3 = out[co + 3, p0 : p0 + n]
    o4 = out[co + 4, p0 : p0 + n]
    o5 = out[co + 5, p0 : p0 + n]
    for p in range(n):
        a = s0[p]
        b = s1[p]
        c = s2[p]
        d = s3[p]
        o0[p] += w00 * a + w10 * b + w20 * c + w30 * d
        o1[p] += w01 * a + w11 * b + w21 * c + w31 * d
        o2[p] += w02 * a + w12 * b + w22 * c + w32 * d
        o3[p] += w03 * a + w13 * b + w23 * c + w33 * d
        o4[p] += w04 * a + w14 * b + w24 * c + w34 * d
        o5[p] += w05 * a + w15 * b + w25 * c + w35 * d


@njit(cache=True, fastmath=_FAST)
def _axpy4x3(out, co, p0, n, src, d0, d1, d2, d3, w, wr, wc):
    """out[co + c, p0 + p] += sum_t w[wr + t, wc + c] * src[d_t + p] for p < n, 4 taps t, 3 output
    channels c."""
    w00, w01, w02 = w[wr, wc], w[wr, wc + 1], w[wr, wc + 2]
    w10, w11, w12 = w[wr + 1, wc], w[wr + 1, wc + 1], w[wr + 1, wc + 2]
    w20, w21, w22 = w[wr + 2, wc], w[wr + 2, wc + 1], w[wr + 2, wc + 2]
    w30, w31, w32 = w[wr + 3, wc], w[wr + 3, wc + 1], w[wr + 3, wc + 2]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    o0 = out[co, p0 : p0 + n]
    o1 = out[co + 1, p0 : p0 + n]
    o2 = out[co + 2, p0 : p0 + n]
    for p in range(n):
        a = s0[p]
        b = s1[p]
        c = s2[p]
        d = s3[p]
        o0[p] += w00 * a + w10 * b + w20 * c + w30 * d
        o1[p] += w01 * a + w11 * b + w21 * c + w31 * d
        o2[p] += w02 * a + w12 * b + w22 * c + w32 * d


@njit(cache=True, fastmath=_FAST)
def _mac5x5(out, co, p0, n, src, d0, d1, d2, d3, d4, w, wr, wc, first):
    """out[co + c, p0 + p] (+)= sum_t w[wr + t, wc + c] * src[d_t + p] for p < n, 5 inputs t x 5
    outputs c; first: overwrite."""
    w00, w01, w02, w03, w04 = w[wr, wc], w[wr, wc + 1], w[wr, wc + 2], w[wr, wc + 3], w[wr, wc + 4]
    w10, w11, w12 = w[wr + 1, wc], w[wr + 1, wc + 1], w[wr + 1, wc + 2]
    w13, w14 = w[wr + 1, wc + 3], w[wr + 1, wc + 4]
    w20, w21, w22 = w[wr + 2, wc], w[wr + 2, wc + 1], w[wr + 2, wc + 2]
    w23, w24 = w[wr + 2, wc + 3], w[wr + 2, wc + 4]
    w30, w31, w32 = w[wr + 3, wc], w[wr + 3, wc + 1], w[wr + 3, wc + 2]
    w33, w34 = w[wr + 3, wc + 3], w[wr + 3, wc + 4]
    w40, w41, w42 = w[wr + 4, wc], w[wr + 4, wc + 1], w[wr + 4, wc + 2]
    w43, w44 = w[wr + 4, wc + 3], w[wr + 4, wc + 4]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    s4 = src[d4 : d4 + n]
    o0 = out[co, p0 : p0 + n]
    o1 = out[co + 1, p0 : p0 + n]
    o2 = out[co + 2, p0 : p0 + n]
    o3 = out[co + 3, p0 : p0 + n]
    o4 = out[co + 4, p0 : p0 + n]
    if first:
        for p in range(n):
            a = s0[p]
            b = s1[p]
            c = s2[p]
            d = s3[p]
            e = s4[p]
            o0[p] = w00 * a + w10 * b + w20 * c + w30 * d + w40 * e
            o1[p] = w01 * a + w11 * b + w21 * c + w31 * d + w41 * e
            o2[p] = w02 * a + w12 * b + w22 * c + w32 * d + w42 * e
            o3[p] = w03 * a + w13 * b + w23 * c + w33 * d + w43 * e
            o4[p] = w04 * a + w14 * b + w24 * c + w34 * d + w44 * e
    else:
        for p in range(n):
            a = s0[p]
            b = s1[p]
            c = s2[p]
            d = s3[p]
            e = s4[p]
            o0[p] += w00 * a + w10 * b + w20 * c + w30 * d + w40 * e
            o1[p] += w01 * a + w11 * b + w21 * c + w31 * d + w41 * e
            o2[p] += w02 * a + w12 * b + w22 * c + w32 * d + w42 * e
            o3[p] += w03 * a + w13 * b + w23 * c + w33 * d + w43 * e
            o4[p] += w04 * a + w14 * b + w24 * c + w34 * d + w44 * e


# --------------------------------------------------------------------------
# dot blocks: g_k (wide: 32 vector registers; narrow: 16)
# --------------------------------------------------------------------------


@njit(cache=True, fastmath=_FAST)
def _dot4x6(g, c0, c1, c2, c3, c4, c5, src, d0, d1, d2, d3, acc):
    """acc[6*t + c] = sum_p src[d_t + p] * g[c_c, p] over g's rows' length, for 4 taps t and 6 rows c_c of g.

    24 accumulators stay in registers (AVX-512 has 32): 10 vector loads per 24 FMAs.
    Whatever ``acc`` held before is overwritten (it starts as fresh ``np.empty`` memory).
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a03 = a04 = a05 = a10 = a11 = a12 = a13 = a14 = a15 = acc[0]
    a20 = a21 = a22 = a23 = a24 = a25 = a30 = a31 = a32 = a33 = a34 = a35 = a00
    g0, g1, g2, g3, g4, g5 = g[c0], g[c1], g[c2], g[c3], g[c4], g[c5]
    n = g.shape[1]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    for p in range(n):
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
def _dot3x3(g, c0, c1, c2, src, d0, d1, d2, acc):
    """acc[3*t + c] = sum_p src[d_t + p] * g[c_c, p] for 3 taps t and 3 rows c_c of g.

    _dot4x6 for 16 vector registers (AVX2): 9 accumulators + 6 loaded vectors, no spills.
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = acc[0]
    g0, g1, g2 = g[c0], g[c1], g[c2]
    n = g.shape[1]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    for p in range(n):
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


@njit(cache=True, fastmath=_FAST)
def _dot5x3(g, co, src, d0, d1, d2, d3, d4, acc):
    """acc[3*t + c] = sum_p src[d_t + p] * g[co + c, p] for 5 taps t and 3 output channels c.

    Whatever ``acc`` held before is overwritten (it may be fresh ``np.empty`` memory:
    starting from ``acc[0] * 0`` would turn a NaN left there into NaN sums).
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = acc[0]
    a30 = a31 = a32 = a40 = a41 = a42 = a00
    g0, g1, g2 = g[co], g[co + 1], g[co + 2]
    n = g.shape[1]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    s4 = src[d4 : d4 + n]
    for p in range(n):
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
def _dot5x2(g, co, src, d0, d1, d2, d3, d4, acc):
    """acc[2*t + c] = sum_p src[d_t + p] * g[co + c, p]: _dot5x3 for 16 vector registers (AVX2; the
    narrow variant).

    10 accumulators + 7 loaded vectors fit; _dot5x3 spills 4 of its 15 there.
    """
    acc[:] = 0  # a zero of the array's dtype
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = acc[0]
    g0, g1 = g[co], g[co + 1]
    n = g.shape[1]
    s0 = src[d0 : d0 + n]
    s1 = src[d1 : d1 + n]
    s2 = src[d2 : d2 + n]
    s3 = src[d3 : d3 + n]
    s4 = src[d4 : d4 + n]
    for p in range(n):
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
