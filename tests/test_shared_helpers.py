"""The one sigmoid and the one int check the library shares."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastcnn import hconfig, kernels, modes, report
from fastcnn.checks import is_int
from fastcnn.kernels import shapes
from fastcnn.layers import activations
from fastcnn.mathutil import sigmoid


def test_one_sigmoid_and_one_is_int():
    assert activations.ACTIVATIONS["sigmoid"][0] is sigmoid
    assert modes.sigmoid is sigmoid and report.sigmoid is sigmoid
    assert hconfig.is_int is is_int and shapes.is_int is is_int and kernels._is_int is is_int


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_large_inputs(dtype):
    x = np.array([-1e30, -1e4, -800.0, -100.0, 100.0, 800.0, 1e4, 1e30, -np.inf, np.inf], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow (or any other) RuntimeWarning
        # exp(-|x|) may underflow to 0: that is the limit; nothing may overflow or be invalid
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            y = sigmoid(x)
    assert y.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    np.testing.assert_array_equal(y[[0, 1, 2, 8]], 0.0)
    np.testing.assert_array_equal(y[[5, 6, 7, 9]], 1.0)
    assert 0 < sigmoid(np.array(-100.0)) < 1e-43  # still the tiny positive value, not 0 from cancellation
    assert sigmoid(np.array(100.0)) == 1.0


def test_sigmoid_equals_the_formula_for_moderate_inputs():
    x = np.linspace(-40.0, 40.0, 8001)
    expected = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(sigmoid(x), expected, rtol=4 * np.finfo(np.float64).eps, atol=0)
    np.testing.assert_array_equal(sigmoid(x[x >= 0]), expected[x >= 0])  # the same expression there
    assert sigmoid(np.array(0.0)) == 0.5
    np.testing.assert_allclose(sigmoid(x) + sigmoid(-x), 1.0, rtol=0, atol=2 * np.finfo(np.float64).eps)
    assert sigmoid(np.array([1, -1])).dtype == np.float64  # ints are computed in float64
    x32 = x.astype(np.float32)
    expected32 = 1.0 / (1.0 + np.exp(-x32.astype(np.float64)))
    np.testing.assert_allclose(sigmoid(x32), expected32, rtol=4 * np.finfo(np.float32).eps, atol=0)


def test_is_int():
    assert all(is_int(v) for v in (0, -3, 10**30, np.int8(1), np.int64(7), np.uint32(2)))
    assert not any(is_int(v) for v in (True, False, np.bool_(True), 1.0, np.float32(2), "3", None, [1]))


def test_hconfig_accepts_numpy_ints_and_returns_python_ints():
    (spec,) = hconfig.parse_hconfigs([["conv", {"ksize": np.int64(3), "chn": np.int32(4), "padding": 1}]])
    assert hconfig.pair(spec, "ksize") == (3, 3) and type(hconfig.pair(spec, "ksize")[0]) is int
    assert type(hconfig.positive_int(spec, "chn")) is int
    assert hconfig.padding(spec, "same") == (1, 1)
    (full,) = hconfig.parse_hconfigs([np.int64(5)])
    assert full.settings == {"width": 5} and type(full.settings["width"]) is int
    with pytest.raises(TypeError, match="expected an int width"):
        hconfig.parse_hconfigs([True])
