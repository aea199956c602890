"""SIMD building blocks of the numba kernels: the 8x8 transpose, planar frame copies, 1-D passes.

Layout in memory is NHWC, as the contract says, but the conv kernels work on
one image at a time in a *planar* copy (``[chn, h, w]``, zero padded): then a
kernel tap ``(ky, kx, ci)`` times one output row is a unit-stride loop over the
output columns, which LLVM turns into SIMD code whatever the channel counts
are (the seed's layers have 1-30 channels, too few to vectorize over).
``_to_planar`` / ``_from_frame`` make and undo those copies (in 8x8 tiles
through the ``_transpose8`` intrinsic from 8 channels and 8 columns up);
``_repad`` and ``_shifted`` derive other frames from a planar one; ``_frame`` allocates
them on a cache-line boundary. The 1-D
passes (``_add_to``, ``_add_scalar``, ``_vsum``) are functions of their own
because LLVM vectorizes a loop only over 1-D views in a small function
(docs/benchmarks.md, "Design of the numba conv", item 5).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic

from .numba_cache import share_cache_stamp

share_cache_stamp()  # before the first cache=True kernel (see numba_cache)

# reassoc lets LLVM vectorize reductions (the g_k dot products, _vsum); contract allows FMA.
# No nnan/ninf: NaN and inf propagate as in NumPy.
_FAST = {"reassoc", "contract"}

# Arguments the kernels pass to their helpers as typed, non-literal values. numba compiles a
# helper once per argument-type tuple, and a literal (``0``, ``False``) or the unsigned index
# of a prange body (``n`` in the parallel pass; int64 when the loop is first typed) is a type
# of its own: each would compile the helper, and everything it calls, again. Helpers get
# ``ZERO`` / ``NO`` / ``YES`` and ``np.int64(n)`` instead (docs/benchmarks.md, "Compile time").
ZERO = np.int64(0)
NO = np.bool_(False)
YES = np.bool_(True)


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
def _frame(n, dtype):
    """An uninitialised 1-D array of n elements of ``dtype`` whose first element is on a 64-byte
    boundary. numba aligns its arrays to 32 bytes, so half of the frames started mid cache line
    and every AVX-512 store into them touched two lines: a correlation into a frame 32 bytes off
    ran 14-19 % slower (AMD Zen 5, docs/benchmarks.md, "The passes' fixed cost", item 3)."""
    buf = np.empty(n + 64, dtype)  # 64 elements of slack: enough for any itemsize
    start = ((-buf.ctypes.data) % 64) // buf.itemsize
    return buf[start : start + n]


@njit(cache=True)
def _repad(src, w, top, left, dst):
    """dst[ch, r + top, left + col] = src[ch, r, col] for col < w where that is inside dst, zeros
    elsewhere: re-pad a planar frame (``top`` / ``left`` may be negative: rows and columns that
    fall outside dst are dropped).

    Row copies instead of a second NHWC -> planar transpose (which costs ~1 cycle per element).
    """
    dst[:] = 0
    rows, width = dst.shape[1], dst.shape[2]
    c0 = max(0, -left)
    c1 = min(w, width - left)
    if c1 <= c0:
        return
    for ch in range(src.shape[0]):
        for r in range(max(0, -top), min(src.shape[1], rows - top)):
            drow = dst[ch, r + top, left + c0 : left + c1]
            srow = src[ch, r, c0:c1]
            for col in range(c1 - c0):
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


# --------------------------------------------------------------------------
# element passes and fixed-order sums
# --------------------------------------------------------------------------


@njit(cache=True, fastmath=_FAST)
def _add_to(o, s):
    """o += s (1-D, same length)."""
    for p in range(o.shape[0]):
        o[p] += s[p]


@njit(cache=True, fastmath=_FAST)
def _add_scalar(o, v):
    """o += v."""
    for p in range(o.shape[0]):
        o[p] += v


@njit(cache=True, fastmath=_FAST)
def _vsum(v):
    """sum(v) with reassociation (SIMD): the same bits on every call."""
    s = v[0]
    for p in range(1, v.shape[0]):
        s += v[p]
    return s


@njit(cache=True)
def _sum_batch(part):
    """part [mb, m] -> [m], adding rows in order 0, 1, ... (deterministic)."""
    out = part[0].copy()
    for n in range(1, part.shape[0]):
        for j in range(part.shape[1]):
            out[j] += part[n, j]
    return out
