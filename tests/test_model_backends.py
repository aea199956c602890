"""Switching backend changes speed only: same seed, same model, same training."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn.kernels import BACKENDS, backend_available

NET = [
    ["conv", {"ksize": 3, "chn": 3}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": 2, "chn": 4, "stride": 2, "actfunc": "tanh"}],
    ["avg", {"ksize": 2, "stride": 1}],
    ["full", {"width": 5, "actfunc": "sigmoid"}],
]


def _model(backend, dtype="float64", seed=11, net=NET):
    ds = tiny_dataset(n=30, shape=(8, 8, 2), classes=3, seed=4)
    return CnnModel("tiny", ds, None, net, backend=backend, seed=seed, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_initial_params_on_every_backend(dtype):
    reference = _model("numpy", "float64")
    for backend in (name for name in BACKENDS if backend_available(name)):
        model = _model(backend, dtype)
        assert list(model.params) == list(reference.params)
        for key, value in model.params.items():
            assert value.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(value, reference.params[key].astype(dtype))
    other = _model("numpy", seed=12)
    assert not np.array_equal(other.params["layer00_conv/k"], reference.params["layer00_conv/k"])


def _train(backend, dtype, epochs=3):
    model = _model(backend, dtype)
    with redirect_stdout(io.StringIO()):
        history = model.train(epochs, 8, 0.01, progress=False)
    return model, history


_AOT = pytest.param("numba-aot", marks=pytest.mark.skipif(not backend_available("numba-aot"),
                                                          reason="numba-aot not built (make aot)"))


@pytest.mark.parametrize("backend", ["numba", _AOT, "better", "adhoc"])
def test_backends_agree_epoch_by_epoch(backend):
    ref_model, ref = _train("numpy", "float64")
    model, hist = _train(backend, "float64")
    np.testing.assert_allclose(hist.costs, ref.costs, rtol=1e-10)
    assert hist.train_acc == ref.train_acc and hist.valid_acc == ref.valid_acc
    for key in ref_model.params:
        np.testing.assert_allclose(model.params[key], ref_model.params[key], rtol=1e-9, atol=1e-12)


def test_numba_float32_agrees_with_numpy_to_float_tolerance():
    ref_model, ref = _train("numpy", "float32")
    model, hist = _train("numba", "float32")
    np.testing.assert_allclose(hist.costs, ref.costs, rtol=1e-4)
    for key in ref_model.params:
        np.testing.assert_allclose(model.params[key], ref_model.params[key], rtol=1e-3, atol=1e-5)
