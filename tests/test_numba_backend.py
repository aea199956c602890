"""Numba-only properties of the ``numba`` backend.

The shared backend fixture (tests/test_kernels.py) checks every backend against
the naive oracle; here: values against a small float64 NumPy reference written
independently, bit-identical repeat calls (no racy accumulation), inputs left
untouched, and a warm on-disk cache (a fresh process compiles nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastcnn import kernels as K
from fastcnn.kernels.shapes import conv_geometry, pool_geometry

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------
# float64 NumPy reference: loops over kernel taps / windows, einsum inside
# --------------------------------------------------------------------------


def _taps(xp, geo, ky, kx):
    """The input pixels that tap (ky, kx) reads for every output pixel: [mb, yh, yw, c]."""
    return xp[:, ky : ky + geo.sh * (geo.yh - 1) + 1 : geo.sh, kx : kx + geo.sw * (geo.yw - 1) + 1 : geo.sw]


def _pad(x, geo):
    top, bottom, left, right = geo.pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def ref_conv(x, k, b, stride, padding):
    x, k, b = (a.astype(np.float64) for a in (x, k, b))
    geo = conv_geometry(x.shape, k.shape[0], k.shape[1], stride, padding)
    xp = _pad(x, geo)
    y = np.zeros((x.shape[0], geo.yh, geo.yw, k.shape[3])) + b
    for ky in range(geo.kh):
        for kx in range(geo.kw):
            y += np.einsum("nhwc,cd->nhwd", _taps(xp, geo, ky, kx), k[ky, kx])
    return y


def ref_conv_backward(g_y, x, k, stride, padding):
    g_y, x, k = (a.astype(np.float64) for a in (g_y, x, k))
    geo = conv_geometry(x.shape, k.shape[0], k.shape[1], stride, padding)
    xp = _pad(x, geo)
    g_xp = np.zeros_like(xp)
    g_k = np.zeros_like(k)
    for ky in range(geo.kh):
        for kx in range(geo.kw):
            g_k[ky, kx] = np.einsum("nhwc,nhwd->cd", _taps(xp, geo, ky, kx), g_y)
            _taps(g_xp, geo, ky, kx)[...] += np.einsum("nhwd,cd->nhwc", g_y, k[ky, kx])
    top, _, left, _ = geo.pads
    g_x = g_xp[:, top : top + x.shape[1], left : left + x.shape[2]]
    return g_x, g_k, g_y.sum(axis=(0, 1, 2))


def ref_pool(x, ksize, stride, kind):
    """(y, g_x for g_y = 1 + index) with first-max routing for 'max'."""
    geo = pool_geometry(x.shape, ksize, stride)
    mb, _, _, c = x.shape
    y = np.zeros((mb, geo.yh, geo.yw, c))
    g_y = np.arange(y.size, dtype=np.float64).reshape(y.shape) + 1
    g_x = np.zeros(x.shape)
    for oy in range(geo.yh):
        for ox in range(geo.yw):
            rows = slice(oy * geo.sh, oy * geo.sh + geo.kh)
            cols = slice(ox * geo.sw, ox * geo.sw + geo.kw)
            win = x[:, rows, cols].reshape(mb, -1, c).astype(np.float64)
            if kind == "max":
                y[:, oy, ox] = win.max(axis=1)
                first = win.argmax(axis=1)  # np.argmax returns the first maximum
                onehot = np.zeros_like(win)
                np.put_along_axis(onehot, first[:, None], 1.0, axis=1)
                g_x[:, rows, cols] += (onehot * g_y[:, oy, ox][:, None]).reshape(mb, geo.kh, geo.kw, c)
            else:
                y[:, oy, ox] = win.mean(axis=1)
                g_x[:, rows, cols] += g_y[:, oy, ox][:, None, None] / (geo.kh * geo.kw)
    return y, g_y, g_x


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------

CONV_CASES = [
    # (x shape, (kh, kw), ychn, stride, padding)
    ((2, 7, 6, 3), (3, 3), 4, 1, "same"),
    ((2, 7, 6, 3), (3, 3), 4, 1, "valid"),
    ((2, 9, 8, 2), (3, 3), 5, 2, "same"),
    ((1, 8, 7, 3), (4, 2), 3, 1, "same"),  # even, non-square kernel: extra pad bottom/right
    ((2, 9, 9, 1), (5, 5), 6, (2, 1), 1),  # int padding, unequal strides
    ((1, 6, 6, 2), (2, 2), 2, 3, "valid"),  # stride > kernel
    # >= 8 channels and columns: the 8x8-tile transposes, with overlapping last tiles
    ((2, 9, 11, 9), (3, 3), 13, 1, "same"),
    ((1, 10, 8, 8), (3, 3), 8, 1, "valid"),  # x exactly one tile wide; y 6 wide (element path)
    ((2, 12, 16, 1), (5, 5), 30, 1, "valid"),  # one channel in, SimpleConvNet's 30 out, 12 wide
    ((1, 9, 20, 16), (2, 3), 17, 1, "same"),  # even kernel height: extra padding at the bottom
]


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ks, ychn, stride, padding", CONV_CASES)
def test_conv_matches_reference(xs, ks, ychn, stride, padding, dtype):
    rng = np.random.default_rng(0)
    x = _rand(rng, xs, dtype)
    k = _rand(rng, ks + (xs[3], ychn), dtype)
    b = _rand(rng, (ychn,), dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)

    y = K.conv2d_forward(x, k, b, stride, padding, backend="numba")
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_conv(x, k, b, stride, padding), **tol)

    g_y = _rand(rng, y.shape, dtype)
    got = K.conv2d_backward(g_y, x, k, stride, padding, backend="numba")
    want = ref_conv_backward(g_y, x, k, stride, padding)
    for name, g, w in zip(("g_x", "g_k", "g_b"), got, want, strict=True):
        assert g.dtype == dtype and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, err_msg=name, **tol)


@pytest.mark.parametrize("xs, ks, ychn, stride, padding", CONV_CASES[:3] + CONV_CASES[4:5])
def test_ext_regions_match_reference_and_adjoint(xs, ks, ychn, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(np.float32)
    geo = conv_geometry(xs, *ks, stride, padding)
    cols = K.ext_regions(x, *ks, stride, padding, backend="numba")
    # reference: column block (ky, kx) holds the taps of that offset, rows in (n, oy, ox) order
    xp = _pad(x, geo)
    want = np.stack([_taps(xp, geo, ky, kx) for ky in range(ks[0]) for kx in range(ks[1])], axis=3)
    np.testing.assert_array_equal(cols, want.reshape(cols.shape))
    # col2im is the adjoint: <ext(x), c> == <x, undo(c)>
    c = rng.standard_normal(cols.shape).astype(np.float32)
    back = K.undo_ext_regions(c, xs, *ks, stride, padding, backend="numba")
    assert back.shape == xs and back.dtype == np.float32
    lhs = np.vdot(cols.astype(np.float64), c.astype(np.float64))
    np.testing.assert_allclose(lhs, np.vdot(x.astype(np.float64), back.astype(np.float64)), rtol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "xs, ksize, stride",
    [((2, 8, 8, 3), 2, None), ((2, 7, 9, 4), 3, 2), ((1, 9, 9, 2), (3, 2), (3, 3)), ((2, 7, 7, 5), 3, 1)],
)
def test_pool_matches_reference(kind, xs, ksize, stride):
    rng = np.random.default_rng(2)
    # few distinct values: many ties, so first-max routing is exercised (exact in float32)
    x = rng.integers(0, 3, xs).astype(np.float32)
    fwd = getattr(K, f"{kind}_pool_forward")
    bwd = getattr(K, f"{kind}_pool_backward")
    want_y, g_y, want_gx = ref_pool(x, ksize, stride, kind)
    y = fwd(x, ksize, stride, backend="numba")
    g_x = bwd(g_y.astype(np.float32), x, ksize, stride, backend="numba")
    assert y.dtype == g_x.dtype == np.float32
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(g_x, want_gx, rtol=1e-6)


# --------------------------------------------------------------------------
# determinism and purity
# --------------------------------------------------------------------------


def _all_calls(rng, dtype=np.float32):
    """Every kernel once on a batch large enough to spread over all threads."""
    x = _rand(rng, (8, 12, 12, 3), dtype)
    k = _rand(rng, (3, 3, 3, 5), dtype)
    b = _rand(rng, (5,), dtype)
    g_y = _rand(rng, (8, 6, 6, 5), dtype)
    g_y2 = _rand(rng, (8, 12, 12, 5), dtype)
    g_p = _rand(rng, (8, 5, 5, 3), dtype)
    cols = _rand(rng, (8 * 36, 27), dtype)
    args = (x, k, b, g_y, g_y2, g_p, cols)
    calls = [
        lambda: K.conv2d_forward(x, k, b, 1, "same", backend="numba"),
        lambda: K.conv2d_backward(g_y2, x, k, 1, "same", backend="numba"),
        lambda: K.conv2d_forward(x, k, b, 2, "same", backend="numba"),
        lambda: K.conv2d_backward(g_y, x, k, 2, "same", backend="numba"),
        lambda: K.max_pool_forward(x, 3, 2, backend="numba"),
        lambda: K.max_pool_backward(g_p, x, 3, 2, backend="numba"),
        lambda: K.avg_pool_forward(x, 3, 2, backend="numba"),
        lambda: K.avg_pool_backward(g_p, x, 3, 2, backend="numba"),
        lambda: K.ext_regions(x, 3, 3, 2, "same", backend="numba"),
        lambda: K.undo_ext_regions(cols, x.shape, 3, 3, 2, "same", backend="numba"),
    ]
    return args, calls


def _flat(result):
    return result if isinstance(result, tuple) else (result,)


def test_repeat_calls_are_bit_identical_and_inputs_untouched():
    args, calls = _all_calls(np.random.default_rng(3))
    before = [a.copy() for a in args]
    for call in calls:
        first, second = _flat(call()), _flat(call())
        for a, b in zip(first, second, strict=True):
            assert a.tobytes() == b.tobytes()
    for a, b in zip(args, before, strict=True):
        assert a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------
# on-disk cache: a second process compiles nothing
# --------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from numba.core.dispatcher import Dispatcher
    from fastcnn.kernels import numba_cache
    sys.path.insert(0, sys.argv[2])
    from test_numba_backend import _all_calls
    _, calls = _all_calls(np.random.default_rng(0))
    for call in calls:
        call()
    stats = {}
    for source in numba_cache.KERNEL_SOURCES:  # every kernel module, not only the map's names
        module = importlib.import_module("fastcnn.kernels." + source[: -len(".py")])
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.signatures and obj.py_func.__module__ == module.__name__:
                stats[name] = {"hits": sum(obj.stats.cache_hits.values()),
                               "misses": sum(obj.stats.cache_misses.values())}
    print(json.dumps(stats))
    """
)


def _run_child() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(Path(__file__).parent)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing():
    # the project's own cache (NUMBA_CACHE_DIR if set, else __pycache__): the first
    # child populates it if this process has not, the second must only load
    first = _run_child()
    second = _run_child()
    # a first child that compiled also lists the helpers it compiled on the way (their
    # dispatchers got signatures); a child that loads a kernel from the cache loads its
    # machine code whole, helpers inside, so the second lists only what it called
    assert set(second) <= set(first)
    entry_points = {"_conv_fwd", "_conv_bwd", "_max_fwd", "_max_bwd", "_avg_fwd", "_avg_bwd",
                    "_ext_regions", "_undo_ext_regions"}
    assert entry_points <= set(second), f"kernels that did not run: {entry_points - set(second)}"
    for name, st in second.items():
        assert st["misses"] == 0, f"{name} recompiled in a fresh process: {st}"
        assert st["hits"] > 0, f"{name} was not loaded from the cache: {st}"


def test_dot5x3_ignores_what_its_accumulator_held():
    """Regression: the g_k accumulators once started from ``acc[0] * 0``, so a NaN left in
    fresh ``np.empty`` memory made the whole weight gradient NaN (seen on a fresh machine)."""
    from fastcnn.kernels.numba_blocks import _dot5x3

    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 37)).astype(np.float32)
    s = rng.standard_normal((5, 37)).astype(np.float32)
    acc = np.full(15, np.nan, np.float32)
    _dot5x3(g, 0, s.reshape(-1), 0, 37, 74, 111, 148, acc)
    want = (s.astype(np.float64) @ g.T.astype(np.float64)).ravel()
    np.testing.assert_allclose(acc, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_layouts_and_partial_sums(dtype):
    """The conv's weights in the kernels' layouts (zero padded) and g_k / g_b summed from the
    per-image partials in image order, against NumPy's transposes and sequential sums."""
    from fastcnn.kernels import numba_conv_bwd as cb
    from fastcnn.kernels import numba_conv_fwd as cf

    rng = np.random.default_rng(9)
    kh, kw, xc, yc = 2, 3, 4, 5
    k = rng.standard_normal((kh, kw, xc, yc)).astype(dtype)
    b = rng.standard_normal(yc).astype(dtype)
    wt, bias = np.full((28, 6), np.nan, dtype), np.full(6, np.nan, dtype)
    cf._tap_weights(k, b, wt, bias)
    want = np.zeros((28, 6), dtype)
    want[: xc * kh * kw, :yc] = k.transpose(2, 0, 1, 3).reshape(-1, yc)
    assert np.array_equal(wt, want) and np.array_equal(bias, np.r_[b, 0])
    flip = np.full((32, 6), np.nan, dtype)
    cb._flipped_weights(k, flip)
    want = np.zeros((32, 6), dtype)
    want[: yc * kh * kw, :xc] = k[::-1, ::-1].transpose(3, 0, 1, 2).reshape(-1, xc)
    assert np.array_equal(flip, want)
    k1 = k[:, :, :1]
    wtap = np.full((15, 10), np.nan, dtype)
    cb._c1_weights(k1, wtap)
    want = np.zeros((15, 10), dtype)
    want[:yc, : kh * kw] = k1.reshape(kh * kw, yc).T
    assert np.array_equal(wtap, want)
    for c1, taps, chns, shape in ((False, xc * kh * kw, yc, k.shape), (True, 10, 15, k1.shape)):
        gk_part = rng.standard_normal((7, taps, chns)).astype(dtype)
        gb_part = rng.standard_normal((7, yc)).astype(dtype)
        g_k, g_b = np.empty(shape, dtype), np.empty(yc, dtype)
        cb._sum_parts(gk_part, gb_part, c1, g_k, g_b)
        sk, sb = gk_part[0].copy(), gb_part[0].copy()
        for n in range(1, 7):  # in image order, one add at a time
            sk += gk_part[n]
            sb += gb_part[n]
        if c1:
            rows = sk[: kh * kw, :yc].reshape(shape)
        else:
            rows = sk[:, :yc].reshape(xc, kh, kw, yc).transpose(1, 2, 0, 3)
        assert np.array_equal(g_k, rows) and np.array_equal(g_b, sb)


#: block -> (taps, channels): the AXPY blocks out[co + c, p0 + p] (+)= sum_t w[wr + t, wc + c] * src[d_t + p]
AXPY_BLOCKS = {"_axpy4x6": (4, 6), "_axpy4x3": (4, 3), "_mac5x5": (5, 5)}
#: block -> (taps, channels): the dot blocks acc[channels*t + c] = sum_p src[d_t + p] * g[row_c, p]
DOT_BLOCKS = {"_dot4x6": (4, 6), "_dot3x3": (3, 3), "_dot5x3": (5, 3), "_dot5x2": (5, 2)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [*AXPY_BLOCKS, "_mac5x5-first"])
def test_axpy_blocks_match_float64_at_offsets(name, dtype):
    """Each AXPY block, on whole arrays at arbitrary offsets (odd lengths, a pixel offset p0, a
    weight corner (wr, wc)), adds its taps into exactly its n outputs of its rows (``_mac5x5``
    with ``first`` overwrites them), and nothing else."""
    from fastcnn.kernels import numba_blocks

    block = getattr(numba_blocks, name.split("-")[0])
    taps, chans = AXPY_BLOCKS[name.split("-")[0]]
    rng = np.random.default_rng(len(name))
    n, p0, co, wr, wc = 37, 5, 2, 3, 1
    out = rng.standard_normal((co + chans + 2, p0 + n + 4)).astype(dtype)
    src = rng.standard_normal(300).astype(dtype)
    w = rng.standard_normal((wr + taps + 2, wc + chans + 3)).astype(dtype)
    d = [7, 90, 13, 200, 151][:taps]
    want = out.astype(np.float64)
    sums = sum(np.outer(w[wr + t, wc : wc + chans], src[d[t] : d[t] + n]) for t in range(taps))
    first = name.endswith("-first")
    want[co : co + chans, p0 : p0 + n] = sums + (0 if first else want[co : co + chans, p0 : p0 + n])
    args = (out, co, p0, n, src, *d, w, wr, wc) + ((first,) if "mac" in name else ())
    block(*args)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, taps, chans", [("_axpy4x2", 4, 2), ("_axpy8", 8, 1), ("_axpy1", 1, 1)])
def test_narrow_forward_blocks_match_float64_at_offsets(name, taps, chans, dtype):
    """_corr's blocks (channel co's weights in column co of w, from row wr; _axpy1 takes its one
    weight) add into exactly their n outputs of rows co.. at p0, and nothing else."""
    from fastcnn.kernels import numba_blocks

    rng = np.random.default_rng(taps * 10 + chans)
    n, p0, co, wr = 29, 3, 1, 2
    out = rng.standard_normal((co + chans + 1, p0 + n + 5)).astype(dtype)
    src = rng.standard_normal(300).astype(dtype)
    w = rng.standard_normal((wr + taps + 1, co + chans + 2)).astype(dtype)
    d = [7, 90, 13, 200, 151, 40, 111, 66][:taps]
    want = out.astype(np.float64)
    want[co : co + chans, p0 : p0 + n] += sum(np.outer(w[wr + t, co : co + chans], src[d[t] : d[t] + n])
                                              for t in range(taps))
    if name == "_axpy1":
        getattr(numba_blocks, name)(out, co, p0, n, src, d[0], w[wr, co])
    else:
        getattr(numba_blocks, name)(out, co, p0, n, src, *d, w, wr)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(DOT_BLOCKS))
def test_dot_blocks_match_float64_at_offsets(name, dtype):
    """Each dot block sums its taps' windows of a whole array against rows of g (odd length)."""
    from fastcnn.kernels import numba_blocks

    block = getattr(numba_blocks, name)
    taps, chans = DOT_BLOCKS[name]
    rng = np.random.default_rng(len(name) + 7)
    n = 41
    g = rng.standard_normal((9, n)).astype(dtype)
    src = rng.standard_normal(300).astype(dtype)
    d = [11, 130, 3, 250, 77][:taps]
    acc = np.full(taps * chans, np.nan, dtype)
    if name in ("_dot5x3", "_dot5x2"):  # rows co, co + 1, ...
        rows = [2 + c for c in range(chans)]
        block(g, 2, src, *d, acc)
    else:  # rows named one by one
        rows = [4, 1, 8, 0, 5, 5][:chans]
        block(g, *rows, src, *d, acc)
    want = np.array([[src[d[t] : d[t] + n].astype(np.float64) @ g[r] for r in rows] for t in range(taps)])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(acc, want.ravel(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w, c", [(8, 8), (9, 8), (8, 9), (13, 15), (24, 30), (7, 30), (30, 7)])
def test_planar_transposes_match_numpy(w, c, dtype):
    """NHWC <-> planar frame copies (8x8 SIMD tiles from 8 columns and channels up) equal NumPy's."""
    from fastcnn.kernels import numba_simd as nc

    rng = np.random.default_rng(w * 100 + c)
    h, top, left = 5, 2, 1
    src = rng.standard_normal((3, h, w, c)).astype(dtype)
    dst = np.full((c, h + top + 2, w + left + 3), np.nan, dtype)
    nc._to_planar(src, 1, top, left, dst)
    want = np.zeros_like(dst)
    want[:, top : top + h, left : left + w] = src[1].transpose(2, 0, 1)
    assert np.array_equal(dst, want)
    # and back: crop the padded frame (flattened per channel) into image 2 of an NHWC array
    out = np.full_like(src, np.nan)
    nc._from_frame(dst.reshape(c, -1), dst.shape[2], top, left, out, 2)
    assert np.array_equal(out[2], src[1])
    assert np.isnan(out[:2]).all()  # other images untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_frames_start_on_a_cache_line(dtype):
    """_frame gives n elements of the dtype starting on a 64-byte boundary, for every length
    (numba's own arrays are only 32-byte aligned)."""
    from fastcnn.kernels import numba_simd as nc

    for n in (1, 7, 16, 100, 1000, 12345):
        for _ in range(8):
            a = nc._frame(n, np.dtype(dtype))
            assert a.shape == (n,) and a.dtype == dtype and a.flags.c_contiguous
            assert a.ctypes.data % 64 == 0


@pytest.mark.parametrize("top, left", [(0, 0), (1, 2), (-1, 0), (0, -2), (-2, -1), (4, 5), (-6, 0)])
def test_repad_places_and_clips_the_rows_and_columns(top, left):
    """_repad puts src's first w columns at (top, left) of dst, zeros elsewhere; what falls
    outside dst (negative or too large offsets) is dropped."""
    from fastcnn.kernels import numba_simd as nc

    rng = np.random.default_rng(5)
    src = rng.standard_normal((2, 4, 6)).astype(np.float32)
    w = 5  # the last source column is not copied
    dst = np.full((2, 6, 7), np.nan, np.float32)
    nc._repad(src, w, top, left, dst)
    want = np.zeros_like(dst)
    for r in range(4):
        for c in range(w):
            if 0 <= r + top < 6 and 0 <= c + left < 7:
                want[:, r + top, c + left] = src[:, r, c]
    assert np.array_equal(dst, want)


# --------------------------------------------------------------------------
# both register-block variants (wide: AVX-512 blocks, narrow: AVX2 blocks) on this CPU
# --------------------------------------------------------------------------

VARIANT_CASES = CONV_CASES + [
    ((3, 12, 11, 1), (3, 3), 7, 1, "same"),  # one input channel, 7 out: padded to 15 (wide) / 10 (narrow)
    # several input channels, stride 1, output channels a multiple of 3: the narrow
    # forward switches from _corr (4 taps x 2 channels) to _corr4x3 (see the dispatch table)
    ((2, 7, 6, 3), (3, 3), 6, 1, "same"),
    ((2, 8, 9, 5), (2, 3), 9, 1, "valid"),
]


def _host(wide: bool):
    from fastcnn.kernels import numba_kernels
    from fastcnn.kernels.numba_host import NumbaHost

    return NumbaHost(numba_kernels, wide=wide, threads=numba_kernels.num_threads)


@pytest.fixture(params=[True, False], ids=["wide", "narrow"])
def variant_host(request):
    """``NumbaHost`` over the JIT kernels with the AVX-512 (wide) or AVX2 (narrow) register
    blocks: both run on any CPU, whichever this one is."""
    return _host(request.param)


def _case_arrays(xs, ks, ychn, stride, padding, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = _rand(rng, xs, dtype)
    k = _rand(rng, ks + (xs[3], ychn), dtype)
    b = _rand(rng, (ychn,), dtype)
    geo = conv_geometry(xs, *ks, stride, padding)
    g_y = _rand(rng, (xs[0], geo.yh, geo.yw, ychn), dtype)
    return x, k, b, g_y, geo


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs, ks, ychn, stride, padding", VARIANT_CASES)
def test_both_variants_match_the_float64_oracle(variant_host, xs, ks, ychn, stride, padding, dtype):
    import naive

    x, k, b, g_y, geo = _case_arrays(xs, ks, ychn, stride, padding, dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    y = variant_host.conv2d_forward(x, k, b, geo)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive.conv2d_forward(x, k, b, stride, padding), **tol)
    got = variant_host.conv2d_backward(g_y, x, k, geo)
    want = naive.conv2d_backward(g_y, x, k, stride, padding)
    for name, g, w in zip(("g_x", "g_k", "g_b"), got, want, strict=True):
        assert g.dtype == dtype and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, err_msg=name, **tol)
    _, g_k, g_b = variant_host.conv2d_backward(g_y, x, k, geo, input_grad=False)
    assert np.array_equal(g_k, got[1]) and np.array_equal(g_b, got[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ks, ychn, stride, padding",
                         [c for c in VARIANT_CASES if c[3] == 1])
def test_variants_agree(xs, ks, ychn, stride, padding, dtype):
    """One input channel: _dot5x3 and _dot5x2 give g_k the same bits. Several channels:
    _dot4x6 and _dot3x3 add the same products, but LLVM vectorizes the two reductions
    differently (on AVX-512 _dot3x3 has an extra 4-wide epilogue loop), so g_k agrees to
    rounding only; y differs where the narrow forward runs _corr4x3 (other sum grouping)."""
    x, k, b, g_y, geo = _case_arrays(xs, ks, ychn, stride, padding, dtype, seed=1)
    wide, narrow = _host(True), _host(False)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(wide.conv2d_forward(x, k, b, geo), narrow.conv2d_forward(x, k, b, geo), **tol)
    (gx_w, gk_w, gb_w), (gx_n, gk_n, gb_n) = (h.conv2d_backward(g_y, x, k, geo) for h in (wide, narrow))
    assert np.array_equal(gx_w, gx_n), "g_x: the same blocks (_corr4x3 / _mac5x5) in both variants"
    assert np.array_equal(gb_w, gb_n), "g_b: the same _vsum in both variants"
    if xs[3] == 1:
        assert np.array_equal(gk_w, gk_n), "g_k of one input channel: _dot5x3 and _dot5x2 differ"
    else:
        np.testing.assert_allclose(gk_w, gk_n, **tol)


class _Recorder:
    """A kernel namespace that records (name, args) of every call it passes on."""

    def __init__(self, kernels):
        self.kernels, self.calls = kernels, []

    def __getattr__(self, name):
        fn = getattr(self.kernels, name)

        def call(*args):
            self.calls.append((name, args))
            return fn(*args)

        return call


#: the small kernels around a conv kernel: tap offsets, the weights in the kernels' layouts, g_k's sums
LAYOUT_HELPERS = {"_tap_offsets", "_tap_weights", "_flipped_weights", "_c1_weights", "_sum_parts",
                  "_sum_batch"}


@pytest.mark.parametrize("xchn, ychn, stride, wide, fwd, bwd", [
    (1, 7, 1, True, "_conv_fwd_blocked", "_conv_bwd_c1"),
    (1, 7, 1, False, "_conv_fwd_blocked", "_conv_bwd_c1"),
    (3, 4, 1, True, "_conv_fwd", "_conv_bwd"),
    (3, 4, 1, False, "_conv_fwd", "_conv_bwd"),
    (3, 6, 1, True, "_conv_fwd_blocked", "_conv_bwd"),
    (3, 6, 1, False, "_conv_fwd_blocked", "_conv_bwd"),
    (3, 10, 1, True, "_conv_fwd_blocked", "_conv_bwd"),
    (3, 10, 1, False, "_conv_fwd_blocked", "_conv_bwd"),
    (3, 6, 2, False, "_ext_regions", "_ext_regions"),
    (16, 6, 1, True, "_ext_regions", "_ext_regions"),  # 144 taps on a 8x7 map: gemm_conv
    (14, 6, 1, True, "_conv_fwd_blocked", "_conv_bwd"),  # 126 taps: the per-image kernels
])
def test_dispatch_table(xchn, ychn, stride, wide, fwd, bwd):
    """The cases of the dispatch table in numba_kernels' docstring, and ``wide`` reaching the kernels."""
    from fastcnn.kernels import numba_kernels
    from fastcnn.kernels.numba_host import NumbaHost

    recorder = _Recorder(numba_kernels)
    host = NumbaHost(recorder, wide=wide, threads=numba_kernels.num_threads)
    x, k, b, g_y, geo = _case_arrays((2, 8, 7, xchn), (3, 3), ychn, stride, "same", np.float32)
    host.conv2d_forward(x, k, b, geo)
    assert [name for name, _ in recorder.calls if name not in LAYOUT_HELPERS] == [fwd]
    if fwd == "_conv_fwd_blocked":
        assert recorder.calls[-1][1][-2] is (xchn == 1)  # five: _corr5, else _corr4x3
        assert recorder.calls[-1][1][-1] is wide  # _corr4x3's 4 x 6 passes
    recorder.calls.clear()
    host.conv2d_backward(g_y, x, k, geo)
    calls = [(name, args) for name, args in recorder.calls if name not in LAYOUT_HELPERS]
    assert calls[0][0] == bwd
    if bwd != "_ext_regions":
        assert calls[0][1][-1] is wide
    assert numba_kernels.__doc__.count(fwd) and numba_kernels.__doc__.count(bwd)


@pytest.mark.skipif(not K.backend_available("numba-aot"), reason="numba-aot not built (make aot)")
@pytest.mark.parametrize("wide", [True, False], ids=["wide", "narrow"])
def test_aot_build_runs_both_variants_bit_for_bit(wide):
    """The numba-aot build takes ``wide`` as an argument too: each variant equals the JIT's."""
    from fastcnn.kernels import aot
    from fastcnn.kernels.numba_host import NumbaHost

    jit = _host(wide)
    ahead = NumbaHost(aot.load(lambda: 2), wide=wide, threads=lambda: 2)
    for xs, ks, ychn, stride, padding in VARIANT_CASES:
        x, k, b, g_y, geo = _case_arrays(xs, ks, ychn, stride, padding, np.float32, seed=2)
        assert np.array_equal(jit.conv2d_forward(x, k, b, geo), ahead.conv2d_forward(x, k, b, geo))
        grads = zip(jit.conv2d_backward(g_y, x, k, geo), ahead.conv2d_backward(g_y, x, k, geo), strict=True)
        assert all(np.array_equal(a, c) for a, c in grads)


# --------------------------------------------------------------------------
# the kernel modules: one cache stamp, one AOT digest, one Makefile list
# --------------------------------------------------------------------------


def test_every_kernel_carries_the_shared_cache_stamp():
    """numba keys a cache entry on its own file only; a kernel built from helpers of
    another module must go stale when that module changes, so all share one stamp."""
    import importlib

    from numba.core.dispatcher import Dispatcher

    from fastcnn.kernels import numba_cache, numba_cpu  # noqa: F401 - numba_cpu may swap the caches

    stamp = numba_cache.sources_stamp()
    count = 0
    for source in numba_cache.KERNEL_SOURCES:
        module = importlib.import_module("fastcnn.kernels." + source[: -len(".py")])
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__:
                assert obj._cache._cache_file._source_stamp == stamp, f"{source}: {name}"
                count += 1
    assert count > 30


def test_aot_digest_and_makefile_cover_every_kernel_module(tmp_path, monkeypatch):
    import shutil

    from fastcnn.kernels import aot, numba_cache

    extra = tuple(sorted({f"{module}.py" for module in aot.KERNEL_MODULES.values()}))
    modules = ("numba_kernels.py",) + numba_cache.KERNEL_SOURCES + extra
    for name in modules + ("aot.py",):
        shutil.copy(aot.PACKAGE_DIR / name, tmp_path / name)
    monkeypatch.setattr(aot, "PACKAGE_DIR", tmp_path)
    before = aot.source_digest()
    for name in modules:
        with open(tmp_path / name, "a") as fh:
            fh.write("# edited\n")
        after = aot.source_digest()
        assert after != before, f"aot.source_digest ignores {name}"
        before = after
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (line,) = [line for line in makefile.splitlines() if line.startswith("AOT_SOURCES :=")]
    listed = set(line.split(":=", 1)[1].split())
    assert {f"fastcnn/kernels/{name}" for name in modules + ("aot.py", "aot_build.py")} <= listed


_FLOAT32_CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from numba.core.dispatcher import Dispatcher
    from fastcnn import CnnModel
    from fastcnn.datasets.base import ArrayDataset
    from fastcnn.kernels import numba_cache
    from fastcnn.zoo import get_preset
    rng = np.random.default_rng(0)
    xs = rng.random((20, 28, 28, 1), dtype=np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 20)]
    ds = ArrayDataset("s", xs, ys, "select", [str(i) for i in range(10)], split=(0.6, 0.2))
    model = CnnModel("s", ds, None, get_preset("simpleconvnet"), backend="numba", seed=1)
    model.train(1, 10)
    model.test()
    loaded = {}
    for source in numba_cache.KERNEL_SOURCES + ("numba_norm.py", "numba_random.py"):
        module = importlib.import_module("fastcnn.kernels." + source[: -len(".py")])
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__:
                loaded[name] = [str(sig) for sig in obj.signatures]
    print(json.dumps(loaded))
    """
)


def test_float32_training_loads_no_float64_kernel():
    """Kernels are compiled per dtype on first use: a float32 model never compiles (or loads
    from the cache) a float64 build."""
    out = subprocess.run([sys.executable, "-c", _FLOAT32_CHILD, str(ROOT)], capture_output=True, text=True,
                         timeout=600, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    used = {name: sigs for name, sigs in loaded.items() if sigs}
    assert {"_conv_pool_fwd", "_conv_pool_bwd_c1", "_adam"} <= set(used)
    for name, sigs in used.items():
        assert not any("Array(float64" in sig for sig in sigs), f"{name}: {sigs}"


@pytest.mark.parametrize("features, wide", [
    ("+avx2,+fma,-avx512f", False), ("+avx2, +avx512f,+avx512bw", True), ("", False), ("+avx512vl", False)])
def test_the_register_blocks_follow_numba_cpu_features(monkeypatch, features, wide):
    """NUMBA_CPU_FEATURES (code built for other machines, or 'generic': empty) decides the blocks,
    not the CPU the code is built on; unset, this CPU's features do."""
    from llvmlite import binding
    from numba.core import config

    from fastcnn.kernels import numba_kernels

    monkeypatch.setattr(config, "CPU_FEATURES", features)
    assert numba_kernels._host_has_avx512() is wide
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    assert numba_kernels._host_has_avx512() is bool(binding.get_host_cpu_features().get("avx512f", False))


@pytest.mark.parametrize("length, fill", [(5, 0), (7, 4), (9, -2)])
def test_padded_offsets_copy_then_fill(length, fill):
    """``_padded`` (a loop where numba's slice copy compiled a string error path): the offsets
    first, then ``fill`` up to ``length``."""
    from fastcnn.kernels import numba_conv_bwd

    offs = np.array([3, 1, 4, 1, 5], np.int64)
    want = np.concatenate([offs, np.full(length - offs.size, fill, np.int64)])
    got = numba_conv_bwd._padded(offs, length, fill)
    assert got.dtype == np.int64 and np.array_equal(got, want)
