"""Stride-1 convs on small maps with many taps run as im2col + sgemm on the numba backends
(``numba_host.gemm_conv``): values against the float64 reference, the same bits with 1 and 2
threads, and no fused step for them (the fused kernels would give other bits)."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import tiny_dataset
from naive import conv2d_backward as naive_backward
from naive import conv2d_forward as naive_forward

from fastcnn import CnnModel
from fastcnn import kernels as K
from fastcnn.kernels import numba_kernels
from fastcnn.kernels.numba_host import GEMM_MAX_PIXELS, GEMM_MIN_TAPS, NumbaHost, gemm_conv
from fastcnn.kernels.shapes import conv_geometry
from fastcnn.steps import ConvPoolStep

#: id -> (x shape, kernel, ychn, padding): every one takes the sgemm path
CASES = {
    "8x8x64-k3-same": ((3, 8, 8, 64), (3, 3), 5, "same"),
    "7x5x16-k3-pad2": ((2, 7, 5, 16), (3, 3), 7, 2),
    "9x11x15-k3x4-valid": ((1, 9, 11, 15), (3, 4), 4, "valid"),
    "16x16x8-k4-same": ((3, 16, 16, 8), (4, 4), 3, "same"),
}


def test_the_rule_names_small_maps_with_many_taps():
    def geo(xh, k, pad="same", stride=1):
        return conv_geometry((1, xh, xh, 1), k, k, stride, pad)

    assert gemm_conv(geo(16, 3), GEMM_MIN_TAPS // 9 + 1)  # 16x16 = 256 pixels, 135 taps
    assert not gemm_conv(geo(17, 3), 64)  # 289 pixels
    assert not gemm_conv(geo(8, 3), 14)  # 126 taps
    assert gemm_conv(geo(28, 3, stride=2), 1)  # strided: always
    assert GEMM_MAX_PIXELS == 256 and GEMM_MIN_TAPS == 128


def _arrays(case, dtype, seed=0):
    x_shape, (kh, kw), ychn, padding = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = (rng.standard_normal((kh, kw, x_shape[3], ychn)) * 0.2).astype(dtype)
    b = rng.standard_normal(ychn).astype(dtype)
    geo = conv_geometry(x_shape, kh, kw, 1, padding)
    g = rng.standard_normal((x_shape[0], geo.yh, geo.yw, ychn)).astype(dtype)
    return x, k, b, g, geo, padding


def _backends():
    names = ["numba"] + (["numba-aot"] if K.backend_available("numba-aot") else [])
    return [K.get_backend(name) for name in names]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_match_the_float64_reference(case, dtype):
    x, k, b, g, geo, padding = _arrays(case, dtype)
    assert gemm_conv(geo, x.shape[3])
    want_y = naive_forward(x.astype(np.float64), k.astype(np.float64), b.astype(np.float64), 1, padding)
    want = naive_backward(g.astype(np.float64), x.astype(np.float64), k.astype(np.float64), 1, padding)
    tol = {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for host in _backends():
        np.testing.assert_allclose(host.conv2d_forward(x, k, b, geo), want_y, **tol)
        got = host.conv2d_backward(g, x, k, geo, True)
        for what, w, f in zip(("g_x", "g_k", "g_b"), want, got, strict=True):
            np.testing.assert_allclose(f, w, **tol, err_msg=what)
        g_x, g_k, _ = host.conv2d_backward(g, x, k, geo, False)
        assert g_x is None
        np.testing.assert_array_equal(g_k, got[1])


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_bits_on_one_and_two_threads(case):
    x, k, b, g, geo, _ = _arrays(case, np.float32, seed=1)
    x = np.concatenate([x] * 40)  # big enough for the products to be cut in pieces
    g = np.concatenate([g] * 40)
    results = []
    for threads in (1, 2):
        host = NumbaHost(numba_kernels, wide=numba_kernels._WIDE, threads=lambda n=threads: n)
        results.append((host.conv2d_forward(x, k, b, geo), *host.conv2d_backward(g, x, k, geo, True)))
    for one, two in zip(*results, strict=True):
        assert one.tobytes() == two.tobytes()


def test_such_convs_do_not_fuse_with_their_pooling():
    ds = tiny_dataset(n=12, shape=(8, 8, 32))
    hconfigs = [["conv", {"ksize": 3, "chn": 8}], ["max", {"stride": 2}],  # 288 taps on 8x8: sgemm
                ["conv", {"ksize": 3, "chn": 8}], ["max", {"stride": 2}]]  # 72 taps on 4x4: fused
    model = CnnModel("m", ds, None, hconfigs, backend="numba", seed=1)
    kinds = [type(step) for step in model.steps]
    assert kinds[0] is not ConvPoolStep and ConvPoolStep in kinds
    layered = CnnModel("m", ds, None, hconfigs, backend="numba", seed=1, fuse=False)
    x, y = ds.tr_xs[:6], ds.tr_ys[:6]
    got = model.compute_gradients(x, y)[1]
    want = layered.compute_gradients(x, y)[1]
    for key in want:
        assert got[key].tobytes() == want[key].tobytes(), key
