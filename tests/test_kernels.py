"""Every kernel of every backend against the float64 oracle in ``naive.py``.

Checks values (float64 tight, float32 loose), gradients against central
finite differences, the im2col adjoint identity, agreement between
backends, dtype preservation and that no input is modified. ``adhoc`` and
``better`` are Python loops: they only see the tiny cases; the larger
cases run on the fast backends.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

from fastcnn import kernels as K

TOL = {
    np.float64: {"rtol": 1e-10, "atol": 1e-10},
    np.float32: {"rtol": 1e-4, "atol": 1e-4},
}
FD_TOL = {"rtol": 1e-6, "atol": 1e-7}
ALL_BACKENDS = tuple(name for name in K.BACKENDS if K.backend_available(name))


def conv_case(x_shape, k_shape, stride, padding, name):
    return pytest.param(x_shape, k_shape, stride, padding, id=name)


# (x_shape [mb, h, w, xchn], k_shape [kh, kw, xchn, ychn], stride, padding)
TINY_CONV = [
    conv_case((2, 5, 6, 2), (3, 3, 2, 3), 1, "same", "3x3-s1-same"),
    conv_case((1, 5, 7, 1), (1, 1, 1, 2), 1, "valid", "1x1-valid-1chn"),
    conv_case((2, 6, 5, 3), (2, 2, 3, 2), 1, "same", "2x2-s1-same-even"),
    conv_case((1, 7, 6, 2), (2, 3, 2, 2), 2, "same", "2x3-s2-same"),
    conv_case((2, 7, 9, 1), (3, 3, 1, 2), (2, 3), "valid", "3x3-s23-valid"),
    conv_case((1, 9, 8, 2), (5, 5, 2, 1), 2, 1, "5x5-s2-pad1"),
    conv_case((1, 6, 7, 2), (3, 2, 2, 3), (2, 1), (1, 2), "3x2-s21-pad12"),
    conv_case((1, 5, 5, 1), (5, 5, 1, 1), 1, "valid", "5x5-whole-image"),
    conv_case((1, 3, 4, 2), (1, 1, 2, 2), 1, (2, 1), "1x1-pad-beyond-kernel"),
    conv_case((2, 5, 6, 2), (3, 3, 2, 3), 1, (3, 2), "3x3-pad3-beyond-kernel"),
    conv_case((1, 4, 5, 2), (3, 3, 2, 2), 3, "same", "3x3-s3-same"),
    conv_case((2, 5, 7, 1), (2, 2, 1, 1), 2, "same", "2x2-s2-same-odd"),
    conv_case((1, 5, 4, 1), (2, 3, 1, 2), (2, 3), 0, "2x3-s23-pad0"),
]

LARGE_CONV = [
    conv_case((4, 13, 11, 3), (3, 3, 3, 8), 1, "same", "3x3-s1-same"),
    conv_case((3, 16, 15, 4), (5, 5, 4, 6), 2, "same", "5x5-s2-same"),
    conv_case((2, 12, 17, 2), (2, 3, 2, 5), (2, 3), (1, 2), "2x3-s23-pad12"),
    conv_case((5, 9, 9, 1), (4, 4, 1, 3), 1, "valid", "4x4-valid"),
    conv_case((3, 10, 14, 6), (1, 1, 6, 4), 2, "same", "1x1-s2-same"),
]

# finite differences cost two forward passes per input element: keep them tiny
FD_CONV = [
    conv_case((1, 4, 5, 2), (3, 3, 2, 2), 1, "same", "3x3-s1-same"),
    conv_case((1, 5, 4, 1), (2, 3, 1, 2), (2, 1), "same", "2x3-s21-same"),
    conv_case((2, 5, 5, 1), (2, 2, 1, 1), 2, (1, 0), "2x2-s2-pad10"),
    conv_case((1, 3, 4, 2), (1, 1, 2, 2), 1, 1, "1x1-pad1"),
]


def pool_case(x_shape, ksize, stride, name):
    return pytest.param(x_shape, ksize, stride, id=name)


# (x_shape, ksize, stride); stride None means stride = window
TINY_POOL = [
    pool_case((2, 4, 6, 3), 2, None, "2-tiles"),
    pool_case((1, 5, 7, 2), 2, None, "2-odd-remainder"),
    pool_case((2, 7, 6, 1), 3, 2, "3s2-overlap"),
    pool_case((1, 8, 7, 2), 2, 3, "2s3-gaps"),
    pool_case((1, 6, 9, 2), (2, 3), (1, 2), "2x3-s12"),
    pool_case((1, 5, 5, 1), 5, None, "whole-image"),
    pool_case((1, 3, 4, 2), 1, None, "1x1"),
    pool_case((2, 6, 4, 1), (3, 2), None, "3x2-tiles"),
    pool_case((1, 4, 5, 1), 2, 1, "2s1-overlap"),
]

LARGE_POOL = [
    pool_case((4, 16, 14, 8), 2, None, "2-tiles"),
    pool_case((3, 15, 17, 5), 3, 2, "3s2-overlap"),
    pool_case((2, 13, 12, 6), (2, 3), (3, 2), "2x3-s32"),
    pool_case((3, 11, 9, 4), 2, None, "2-odd-remainder"),
]

FD_POOL = [
    pool_case((1, 4, 6, 2), 2, None, "2-tiles"),
    pool_case((1, 5, 5, 1), 3, 2, "3s2-overlap"),
    pool_case((1, 6, 7, 1), 2, 3, "2s3-gaps"),
    pool_case((2, 4, 5, 1), (2, 3), (1, 2), "2x3-s12"),
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def call_unchanged(fn, *arrays, **kwargs):
    """Call ``fn(*arrays, **kwargs)`` and check it left every array argument as it was."""
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
    out = fn(*arrays, **kwargs)
    for old, new in zip(before, arrays, strict=True):
        if isinstance(old, np.ndarray):
            np.testing.assert_array_equal(new, old, err_msg=f"{fn.__name__} modified an input")
    return out


def check_close(actual, expected, dtype, what=""):
    """Same shape, the input dtype, and values within the dtype's tolerance."""
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), expected, err_msg=what, **TOL[dtype])


def numerical_grad(loss, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``loss()`` with respect to every element of ``arr``."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = loss()
        arr[idx] = old - eps
        down = loss()
        arr[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def conv_inputs(random_array, x_shape, k_shape, dtype):
    x = random_array(x_shape, dtype, seed=1)
    k = random_array(k_shape, dtype, seed=2, scale=0.5)
    b = random_array(k_shape[3:], dtype, seed=3)
    return x, k, b


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


def _check_conv_forward(backend, random_array, x_shape, k_shape, stride, padding, dtype):
    x, k, b = conv_inputs(random_array, x_shape, k_shape, dtype)
    y = call_unchanged(K.conv2d_forward, x, k, b, stride, padding, backend=backend)
    check_close(y, naive.conv2d_forward(x, k, b, stride, padding), dtype, "y")


def _check_conv_backward(backend, random_array, x_shape, k_shape, stride, padding, dtype):
    x, k, b = conv_inputs(random_array, x_shape, k_shape, dtype)
    y_shape = naive.conv2d_forward(x, k, b, stride, padding).shape
    g_y = random_array(y_shape, dtype, seed=4)
    g_x, g_k, g_b = call_unchanged(K.conv2d_backward, g_y, x, k, stride, padding, backend=backend)
    e_x, e_k, e_b = naive.conv2d_backward(g_y, x, k, stride, padding)
    check_close(g_x, e_x, dtype, "g_x")
    check_close(g_k, e_k, dtype, "g_k")
    check_close(g_b, e_b, dtype, "g_b")


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), TINY_CONV)
def test_conv_forward_tiny(backend, random_array, x_shape, k_shape, stride, padding, dtype):
    _check_conv_forward(backend, random_array, x_shape, k_shape, stride, padding, dtype)


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), LARGE_CONV)
def test_conv_forward_large(fast_backend, random_array, x_shape, k_shape, stride, padding, dtype):
    _check_conv_forward(fast_backend, random_array, x_shape, k_shape, stride, padding, dtype)


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), TINY_CONV)
def test_conv_backward_tiny(backend, random_array, x_shape, k_shape, stride, padding, dtype):
    _check_conv_backward(backend, random_array, x_shape, k_shape, stride, padding, dtype)


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), LARGE_CONV)
def test_conv_backward_large(fast_backend, random_array, x_shape, k_shape, stride, padding, dtype):
    _check_conv_backward(fast_backend, random_array, x_shape, k_shape, stride, padding, dtype)


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), FD_CONV)
def test_conv_backward_finite_differences(backend, random_array, x_shape, k_shape, stride, padding):
    """The backend's gradients of sum(y * w) match central differences of its own forward."""
    x, k, b = conv_inputs(random_array, x_shape, k_shape, np.float64)
    y = K.conv2d_forward(x, k, b, stride, padding, backend=backend)
    w = random_array(y.shape, np.float64, seed=5)

    def loss():
        return float(np.sum(K.conv2d_forward(x, k, b, stride, padding, backend=backend) * w))

    g_x, g_k, g_b = K.conv2d_backward(w, x, k, stride, padding, backend=backend)
    np.testing.assert_allclose(g_x, numerical_grad(loss, x), err_msg="g_x", **FD_TOL)
    np.testing.assert_allclose(g_k, numerical_grad(loss, k), err_msg="g_k", **FD_TOL)
    np.testing.assert_allclose(g_b, numerical_grad(loss, b), err_msg="g_b", **FD_TOL)


def test_conv_defaults_are_stride_1_same(backend, random_array):
    """Default stride 1, padding 'same': the output keeps the input's height and width."""
    x, k, b = conv_inputs(random_array, (1, 5, 6, 2), (2, 3, 2, 2), np.float64)
    y = K.conv2d_forward(x, k, b, backend=backend)
    assert y.shape == (1, 5, 6, 2)
    check_close(y, naive.conv2d_forward(x, k, b, 1, "same"), np.float64, "y")


@pytest.mark.parametrize(("xh", "xw", "kh", "kw", "stride"), [(7, 6, 3, 2, 2), (9, 10, 5, 4, (3, 2))])
def test_conv_same_output_is_ceil_of_input_over_stride(fast_backend, random_array, xh, xw, kh, kw, stride):
    x, k, b = conv_inputs(random_array, (1, xh, xw, 1), (kh, kw, 1, 1), np.float64)
    y = K.conv2d_forward(x, k, b, stride, "same", backend=fast_backend)
    sh, sw = naive.pair(stride)
    assert y.shape == (1, -(-xh // sh), -(-xw // sw), 1)


def test_conv_accepts_non_contiguous_inputs(fast_backend, random_array, dtype):
    """Transposed / Fortran-ordered / strided views give the same result as contiguous copies."""
    x = random_array((3, 9, 8, 2), dtype, seed=1)
    x_view = np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    k = np.asfortranarray(random_array((3, 3, 2, 4), dtype, seed=2))
    b = random_array((8,), dtype, seed=3)[::2]
    assert not x_view.flags.c_contiguous and not b.flags.c_contiguous
    y = K.conv2d_forward(x_view, k, b, 2, "same", backend=fast_backend)
    check_close(y, naive.conv2d_forward(x, k, b, 2, "same"), dtype, "y")
    g_y = random_array(y.shape, dtype, seed=4)[:, ::-1]
    got = K.conv2d_backward(g_y, x_view, k, 2, "same", backend=fast_backend)
    expected = naive.conv2d_backward(g_y, x, k, 2, "same")
    for g, e, name in zip(got, expected, ("g_x", "g_k", "g_b"), strict=True):
        check_close(g, e, dtype, name)


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------

POOLS = {
    "max": (K.max_pool_forward, K.max_pool_backward, naive.max_pool_forward, naive.max_pool_backward),
    "avg": (K.avg_pool_forward, K.avg_pool_backward, naive.avg_pool_forward, naive.avg_pool_backward),
}


def _check_pool(kind, backend, distinct_array, random_array, x_shape, ksize, stride, dtype):
    fwd, bwd, n_fwd, n_bwd = POOLS[kind]
    x = distinct_array(x_shape, dtype, seed=6)
    y = call_unchanged(fwd, x, ksize, stride, backend=backend)
    expected = n_fwd(x, ksize, stride)
    check_close(y, expected, dtype, f"{kind} y")
    g_y = random_array(expected.shape, dtype, seed=7)
    g_x = call_unchanged(bwd, g_y, x, ksize, stride, backend=backend)
    check_close(g_x, n_bwd(g_y, x, ksize, stride), dtype, f"{kind} g_x")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("x_shape", "ksize", "stride"), TINY_POOL)
def test_pool_tiny(kind, backend, distinct_array, random_array, x_shape, ksize, stride, dtype):
    _check_pool(kind, backend, distinct_array, random_array, x_shape, ksize, stride, dtype)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("x_shape", "ksize", "stride"), LARGE_POOL)
def test_pool_large(kind, fast_backend, distinct_array, random_array, x_shape, ksize, stride, dtype):
    _check_pool(kind, fast_backend, distinct_array, random_array, x_shape, ksize, stride, dtype)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("x_shape", "ksize", "stride"), FD_POOL)
def test_pool_backward_finite_differences(
    kind, backend, distinct_array, random_array, x_shape, ksize, stride
):
    """Gradient of sum(pool(x) * w) vs central differences (x tie-free, steps 0.1 >> eps)."""
    fwd, bwd, _, _ = POOLS[kind]
    x = distinct_array(x_shape, np.float64, seed=8)
    y = fwd(x, ksize, stride, backend=backend)
    w = random_array(y.shape, np.float64, seed=9)

    def loss():
        return float(np.sum(fwd(x, ksize, stride, backend=backend) * w))

    np.testing.assert_allclose(bwd(w, x, ksize, stride, backend=backend), numerical_grad(loss, x), **FD_TOL)


def test_max_pool_ties_go_to_first_max(backend, dtype):
    """Equal maxima: the whole gradient goes to the first in row-major window order."""
    x = np.ones((1, 4, 4, 1), dtype)
    x[0, 3, 3, 0] = 0.5  # the last window still has ties among its first three
    g_y = np.array([1.0, 2.0, 3.0, 4.0], dtype).reshape(1, 2, 2, 1)
    g_x = K.max_pool_backward(g_y, x, 2, backend=backend)
    expected = np.zeros((1, 4, 4, 1))
    expected[0, 0, 0, 0], expected[0, 0, 2, 0], expected[0, 2, 0, 0], expected[0, 2, 2, 0] = 1, 2, 3, 4
    check_close(g_x, expected, dtype, "g_x")
    check_close(K.max_pool_forward(x, 2, backend=backend), np.ones((1, 2, 2, 1)), dtype, "y")


@pytest.mark.parametrize(("x_shape", "ksize", "stride"), TINY_POOL)
def test_max_pool_many_ties(backend, random_array, x_shape, ksize, stride, dtype):
    """Inputs drawn from {0, 1, 2}: lots of ties, overlapping windows sharing a max accumulate."""
    x = np.random.default_rng(10).integers(0, 3, size=x_shape).astype(dtype)
    y = K.max_pool_forward(x, ksize, stride, backend=backend)
    check_close(y, naive.max_pool_forward(x, ksize, stride), dtype, "y")
    g_y = random_array(y.shape, dtype, seed=11)
    g_x = K.max_pool_backward(g_y, x, ksize, stride, backend=backend)
    check_close(g_x, naive.max_pool_backward(g_y, x, ksize, stride), dtype, "g_x")


def test_overlapping_max_pool_accumulates(backend):
    """A pixel that is the max of several overlapping windows receives all their gradients."""
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 5.0  # the max of all four 2x2 windows (stride 1)
    g_y = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    g_x = K.max_pool_backward(g_y, x, 2, 1, backend=backend)
    assert g_x[0, 1, 1, 0] == 10.0
    assert np.count_nonzero(g_x) == 1


# --------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), TINY_CONV)
def test_ext_regions_tiny(backend, random_array, x_shape, k_shape, stride, padding, dtype):
    kh, kw = k_shape[:2]
    x = random_array(x_shape, dtype, seed=12)
    cols = call_unchanged(K.ext_regions, x, kh, kw, stride, padding, backend=backend)
    expected = naive.ext_regions(x, kh, kw, stride, padding)
    check_close(cols, expected, dtype, "cols")
    c = random_array(expected.shape, dtype, seed=13)
    g_x = call_unchanged(K.undo_ext_regions, c, x_shape, kh, kw, stride, padding, backend=backend)
    check_close(g_x, naive.undo_ext_regions(c, x_shape, kh, kw, stride, padding), dtype, "g_x")


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), LARGE_CONV)
def test_ext_regions_large(fast_backend, random_array, x_shape, k_shape, stride, padding, dtype):
    kh, kw = k_shape[:2]
    x = random_array(x_shape, dtype, seed=12)
    cols = K.ext_regions(x, kh, kw, stride, padding, backend=fast_backend)
    expected = naive.ext_regions(x, kh, kw, stride, padding)
    check_close(cols, expected, dtype, "cols")
    c = random_array(expected.shape, dtype, seed=13)
    g_x = K.undo_ext_regions(c, x_shape, kh, kw, stride, padding, backend=fast_backend)
    check_close(g_x, naive.undo_ext_regions(c, x_shape, kh, kw, stride, padding), dtype, "g_x")


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), TINY_CONV)
def test_ext_regions_adjoint(backend, random_array, x_shape, k_shape, stride, padding):
    """<ext_regions(x), c> == <x, undo_ext_regions(c)> for random x and c."""
    kh, kw = k_shape[:2]
    x = random_array(x_shape, np.float64, seed=14)
    cols = K.ext_regions(x, kh, kw, stride, padding, backend=backend)
    c = random_array(cols.shape, np.float64, seed=15)
    back = K.undo_ext_regions(c, x_shape, kh, kw, stride, padding, backend=backend)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-12)


@pytest.mark.parametrize(("x_shape", "k_shape", "stride", "padding"), TINY_CONV[:6])
def test_conv_is_ext_regions_times_flat_kernel(backend, random_array, x_shape, k_shape, stride, padding):
    """Column order of ext_regions matches k.reshape(-1, ychn): conv == cols @ k_flat + b."""
    x, k, b = conv_inputs(random_array, x_shape, k_shape, np.float64)
    cols = K.ext_regions(x, k.shape[0], k.shape[1], stride, padding, backend=backend)
    y = K.conv2d_forward(x, k, b, stride, padding, backend=backend)
    np.testing.assert_allclose(cols @ k.reshape(-1, k.shape[3]) + b, y.reshape(-1, k.shape[3]), rtol=1e-12)


# --------------------------------------------------------------------------
# all backends agree
# --------------------------------------------------------------------------


def _all_functions(backend, random_array, dtype):
    """Every contract function of one backend on one tiny, awkward geometry."""
    x, k, b = conv_inputs(random_array, (2, 7, 6, 2), (2, 3, 2, 3), dtype)
    stride, padding = (2, 1), "same"
    y = K.conv2d_forward(x, k, b, stride, padding, backend=backend)
    g_y = random_array(y.shape, dtype, seed=16)
    out = {"conv y": y}
    grads = K.conv2d_backward(g_y, x, k, stride, padding, backend=backend)
    out.update(zip(("g_x", "g_k", "g_b"), grads, strict=True))
    cols = K.ext_regions(x, 2, 3, stride, padding, backend=backend)
    out["cols"] = cols
    out["undo"] = K.undo_ext_regions(cols, x.shape, 2, 3, stride, padding, backend=backend)
    for kind, (fwd, bwd, _, _) in POOLS.items():
        p = fwd(x, 3, 2, backend=backend)
        out[f"{kind} y"] = p
        out[f"{kind} g_x"] = bwd(np.ones_like(p), x, 3, 2, backend=backend)
    return out


def test_backends_agree(random_array, dtype):
    results = {name: _all_functions(name, random_array, dtype) for name in ALL_BACKENDS}
    reference = results["numpy"]
    for name, out in results.items():
        for what, value in out.items():
            assert value.dtype == dtype, f"{name} {what}: dtype {value.dtype}"
            np.testing.assert_allclose(
                value, reference[what], err_msg=f"{name} vs numpy: {what}", **TOL[dtype]
            )


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding"),
    [((2, 7, 6, 1), (5, 4), 1, "valid"), ((2, 7, 6, 3), (3, 3), 1, "same"), ((1, 8, 7, 2), (2, 3), 2, 1)],
    ids=["one-channel", "multi-channel", "strided"],
)
def test_conv_backward_without_input_grad(any_backend, x_shape, kernel, stride, padding):
    """input_grad=False returns g_x None and the very same g_k, g_b (every code path)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal((*kernel, x_shape[3], 4)).astype(np.float32)
    y = K.conv2d_forward(x, k, np.zeros(4, np.float32), stride, padding, backend=any_backend)
    g_y = rng.standard_normal(y.shape).astype(np.float32)
    full = K.conv2d_backward(g_y, x, k, stride, padding, backend=any_backend)
    g_x, g_k, g_b = K.conv2d_backward(g_y, x, k, stride, padding, input_grad=False, backend=any_backend)
    assert g_x is None and full[0] is not None
    np.testing.assert_array_equal(g_k, full[1])
    np.testing.assert_array_equal(g_b, full[2])
