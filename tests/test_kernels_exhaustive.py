"""Exhaustive sweeps of every backend against the float64 oracle, and PyTorch checks.

The sweep over the compiled and im2col backends runs in ``make test`` (a few
seconds); the same sweep over the pure-Python ``better`` and ``adhoc`` backends
is marked ``slow`` and excluded by default (``pytest -m slow``). The PyTorch
checks (marker ``torch``) run when torch is installed and skip cleanly otherwise.
"""

from __future__ import annotations

import itertools

import naive
import numpy as np
import pytest

from fastcnn import kernels as K

BACKEND_PARAMS = [
    "numba",
    pytest.param("numba-aot", marks=pytest.mark.skipif(not K.backend_available("numba-aot"),
                                                       reason="numba-aot not built (make aot)")),
    "numpy",
    pytest.param("better", marks=pytest.mark.slow),
    pytest.param("adhoc", marks=pytest.mark.slow),
]

CONV_GRID = list(
    itertools.product(
        [(1, 5, 7, 1), (2, 9, 6, 3), (3, 8, 8, 4)],  # x shapes
        [(1, 1), (2, 2), (3, 3), (2, 3), (5, 4)],  # kernels
        [1, 2, (1, 3)],  # strides
        ["same", "valid", 1, (2, 0)],  # paddings
        [1, 5],  # output channels
    )
)


def _fits(x_shape, kernel, stride, padding) -> bool:
    pt, pb, pl, pr = naive.pads_for(x_shape, *kernel, stride, padding)
    return kernel[0] <= x_shape[1] + pt + pb and kernel[1] <= x_shape[2] + pl + pr


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding", "ychn"), CONV_GRID)
def test_conv_sweep_matches_oracle(backend, x_shape, kernel, stride, padding, ychn):
    if not _fits(x_shape, kernel, stride, padding):
        pytest.skip("window larger than the padded input")
    rng = np.random.default_rng(hash((x_shape, kernel, ychn)) % 2**32)
    x = rng.standard_normal(x_shape)
    k = rng.standard_normal((*kernel, x_shape[3], ychn))
    b = rng.standard_normal(ychn)
    y = K.conv2d_forward(x, k, b, stride, padding, backend=backend)
    np.testing.assert_allclose(y, naive.conv2d_forward(x, k, b, stride, padding), rtol=1e-10, atol=1e-10)
    g_y = rng.standard_normal(y.shape)
    got = K.conv2d_backward(g_y, x, k, stride, padding, backend=backend)
    want = naive.conv2d_backward(g_y, x, k, stride, padding)
    for name, g, w in zip(("g_x", "g_k", "g_b"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10, err_msg=name)


POOL_GRID = list(itertools.product([(2, 7, 9, 3), (1, 12, 10, 5)], [1, 2, 3, (2, 3)], [None, 1, 2, (3, 1)]))


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize(("x_shape", "ksize", "stride"), POOL_GRID)
def test_pool_sweep_matches_oracle(backend, x_shape, ksize, stride):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    for kind in ("max", "avg"):
        fwd = {"max": K.max_pool_forward, "avg": K.avg_pool_forward}[kind]
        bwd = {"max": K.max_pool_backward, "avg": K.avg_pool_backward}[kind]
        ref_f = {"max": naive.max_pool_forward, "avg": naive.avg_pool_forward}[kind]
        ref_b = {"max": naive.max_pool_backward, "avg": naive.avg_pool_backward}[kind]
        y = fwd(x, ksize, stride, backend=backend)
        np.testing.assert_allclose(y, ref_f(x, ksize, stride), rtol=1e-12, atol=1e-12)
        g_y = rng.standard_normal(y.shape)
        np.testing.assert_allclose(bwd(g_y, x, ksize, stride, backend=backend),
                                   ref_b(g_y, x, ksize, stride), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize(("stride", "padding"), [(1, "valid"), (2, 1), (1, 2)])
def test_numba_conv_matches_torch(stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 8, 3))
    k = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    y = K.conv2d_forward(x, k, b, stride, padding, backend="numba")
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    kt = torch.tensor(k.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    pad = 0 if padding == "valid" else padding
    yt = torch.nn.functional.conv2d(xt, kt, bt, stride=stride, padding=pad)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    g_y = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g_y.transpose(0, 3, 1, 2)))
    g_x, g_k, g_b = K.conv2d_backward(g_y, x, k, stride, padding, backend="numba")
    np.testing.assert_allclose(g_x, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_k, kt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_b, bt.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
def test_numba_max_pool_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 10, 3))
    y = K.max_pool_forward(x, 2, backend="numba")
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 2)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    g_y = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g_y.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(K.max_pool_backward(g_y, x, 2, backend="numba"),
                               xt.grad.numpy().transpose(0, 2, 3, 1))
