"""The elementwise steps every backend provides: ReLU forward/backward and the Adam update."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_inplace_and_backward(any_backend, dtype):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 2)).astype(dtype)
    want = np.maximum(x, 0)
    y = impl.relu_inplace(x)
    np.testing.assert_array_equal(y, want)
    assert y.dtype == dtype
    g_y = rng.standard_normal(x.shape).astype(dtype)
    g = impl.relu_backward(g_y, want)
    np.testing.assert_array_equal(g, np.where(want > 0, g_y, 0))
    assert g.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_matches_the_seed_rule(any_backend, dtype):
    impl = K.get_backend(any_backend)
    rng = np.random.default_rng(1)
    p = rng.standard_normal((4, 6)).astype(dtype)
    g = rng.standard_normal((4, 6)).astype(dtype)
    m = rng.standard_normal((4, 6)).astype(dtype)
    v = rng.random((4, 6)).astype(dtype)
    lr_t, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    m_want = b1 * m.astype(np.float64) + (1 - b1) * g
    v_want = b2 * v.astype(np.float64) + (1 - b2) * g * g
    p_want = p - lr_t * m_want / (np.sqrt(v_want) + eps)
    impl.adam_update(p, g, m, v, lr_t, b1, b2, eps)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(m, m_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(v, v_want, rtol=tol, atol=tol)
    np.testing.assert_allclose(p, p_want, rtol=tol, atol=tol)
