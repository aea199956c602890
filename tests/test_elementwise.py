"""The elementwise steps every backend provides: ReLU forward/backward and the Adam update."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_and_backward(any_backend, dtype):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 2)).astype(dtype)
    x[0, 0, 0, 0], x[1, 2, 3, 1] = np.nan, -np.inf  # NaN stays NaN, as with np.maximum
    want = np.maximum(x, 0)
    y = impl.relu_forward(x)
    np.testing.assert_array_equal(y, want)
    assert np.isnan(y[0, 0, 0, 0]) and y[1, 2, 3, 1] == 0
    assert y.dtype == dtype
    g_y = rng.standard_normal(x.shape).astype(dtype)
    g = impl.relu_backward(g_y, want)
    np.testing.assert_array_equal(g, np.where(want > 0, g_y, 0))  # NaN in y passes no gradient
    assert g.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_into_out_is_bit_identical(any_backend, dtype):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 4, 2)).astype(dtype)
    x[0, 0, 0, 0], x[0, 1, 0, 0] = np.nan, -0.0
    want = impl.relu_forward(x.copy())
    out = np.full_like(x, 7)
    x_before = x.copy()
    assert impl.relu_forward(x, out=out) is out
    assert out.tobytes() == want.tobytes()
    assert x.tobytes() == x_before.tobytes()  # with out, x is left alone (also on NumPy)
    g_y = rng.standard_normal(x.shape).astype(dtype)
    g_y[1, 1, 1, 1] = -0.0
    want_g = impl.relu_backward(g_y, want)
    out = np.full_like(x, 7)
    assert impl.relu_backward(g_y, want, out=out) is out
    assert out.tobytes() == want_g.tobytes()
    with pytest.raises(ValueError, match="out"):
        impl.relu_backward(g_y, want, out=np.empty((3, 5, 4, 3), dtype))


def test_numba_relu_rejects_an_out_it_cannot_write_through():
    impl = K.get_backend("numba")
    x = np.ones((4, 6), np.float32)
    for bad in (np.empty((6, 4), np.float32).T, np.empty((4, 6), np.float64), np.empty((4, 5), np.float32)):
        with pytest.raises(ValueError, match="out must be"):
            impl.relu_forward(x, out=bad)
        with pytest.raises(ValueError, match="out must be"):
            impl.relu_backward(x, x, out=bad)


@pytest.mark.parametrize("shape", [(4, 6), (40, 31)], ids=["small", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_matches_the_seed_rule(any_backend, dtype, shape):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(1)
    p = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    m = rng.standard_normal(shape).astype(dtype)
    v = rng.random(shape).astype(dtype)
    lr_t, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    m_want = b1 * m.astype(np.float64) + (1 - b1) * g
    v_want = b2 * v.astype(np.float64) + (1 - b2) * g * g
    p_want = p - lr_t * m_want / (np.sqrt(v_want) + eps)
    impl.adam_update(p, g, m, v, lr_t, b1, b2, eps)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(m, m_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(v, v_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(p, p_want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_gives_the_same_bits_serial_and_parallel(dtype):
    """numba's _adam updates small parameters on the calling thread and large ones in parallel:
    the same expression, so the same bits (a large update equals its pieces updated one by one)."""
    from fastcnn.kernels import numba_elementwise as ne

    rng = np.random.default_rng(4)
    n = 3 * ne._ADAM_SERIAL + 7
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(3)] + [rng.random(n).astype(dtype)]
    whole = [a.copy() for a in arrays]
    ne._adam(*whole, 0.01, 0.9, 0.999, 1e-7)
    pieces = [a.copy() for a in arrays]
    for lo in range(0, n, ne._ADAM_SERIAL):
        ne._adam(*(a[lo : lo + ne._ADAM_SERIAL] for a in pieces), 0.01, 0.9, 0.999, 1e-7)
    for got, want in zip(whole, pieces, strict=True):
        assert np.array_equal(got, want)


# products big enough to be cut into pieces (by rows, by columns), and small ones that are not
MATMUL_SHAPES = [(100, 4320, 100), (4320, 100, 100), (100, 100, 4320), (7, 9, 5), (1, 300, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", MATMUL_SHAPES)
def test_matmul_matches_float64(any_backend, dtype, m, k, n):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-4 * np.sqrt(k) if dtype == np.float32 else 1e-11 * np.sqrt(k)
    for left, right in [(a, b), (np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T)]:
        got = impl.matmul(left, right)  # C-ordered operands, then transposed (F-ordered) views
        assert got.shape == (m, n) and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("m,k,n", MATMUL_SHAPES)
def test_matmul_into_out_is_bit_identical(any_backend, m, k, n):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    for left in (a, np.ascontiguousarray(a.T).T):  # as the dense layers call it: x2 and x2.T views
        want = impl.matmul(left, b)
        out = np.full((m, n), np.nan, np.float32)
        got = impl.matmul(left, b, out=out)
        assert got is out
        assert out.tobytes() == want.tobytes()


def test_blocked_matmul_pieces_do_not_depend_on_the_thread_count():
    from fastcnn.kernels import blocked_matmul as bm

    assert bm.plan(100, 4320, 100) == ("inner", [(0, 2160), (2160, 4320)])  # partials added in order
    assert bm.plan(4320, 100, 100) == ("rows", [(0, 2160), (2160, 4320)])
    assert bm.plan(100, 100, 4321) == ("cols", [(0, 2161), (2161, 4321)])
    assert bm.plan(100, 100, 100) == ("rows", [(0, 100)])  # under MIN_FLOPS: one call
    rng = np.random.default_rng(3)
    assert bm.plan(300, 300, 300) == ("rows", [(0, 150), (150, 300)])  # ties: rows, then columns
    for m, k, n in [(100, 4320, 100), (4320, 100, 100), (100, 100, 4320), (100, 4321, 100)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        results = [bm.matmul(a, b, threads) for threads in (1, 2, 3)]
        for got in results[1:]:
            np.testing.assert_array_equal(got, results[0])
        np.testing.assert_allclose(results[0], a.astype(np.float64) @ b, rtol=1e-3, atol=1e-2)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_blocked_matmul_works_in_a_forked_child():
    """The thread pool of the parent does not exist after fork: the child must not hang."""
    import os

    from fastcnn.kernels import blocked_matmul as bm

    rng = np.random.default_rng(4)
    a = rng.standard_normal((100, 4320)).astype(np.float32)
    b = rng.standard_normal((4320, 100)).astype(np.float32)
    want = bm.matmul(a, b, 2)  # the parent's pool now exists
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the product is right
        ok = np.array_equal(bm.matmul(a, b, 2), want)
        os._exit(0 if ok else 1)
    import signal
    import time

    deadline = time.monotonic() + 60
    while True:  # a hung child fails the test instead of hanging the run
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("matmul in a forked child did not finish within 60 s")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
