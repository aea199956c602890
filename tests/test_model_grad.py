"""Every layer's backward against central finite differences of the model loss (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import numeric_grad, tiny_dataset

from fastcnn import CnnModel

EPS = 1e-6
SAMPLES_PER_ARRAY = 25  # finite differences on a random subset of entries

NETS = {
    "conv-max-full": [
        ["conv", {"ksize": 3, "chn": 3, "actfunc": "sigmoid"}],
        ["max", {"stride": 2}],
        ["full", {"width": 5, "actfunc": "tanh"}],
    ],
    "conv-even-stride2-avg": [
        ["conv", {"ksize": 2, "chn": 4, "stride": 2, "actfunc": "tanh"}],
        ["avg", {"stride": 3}],
        ["full", {"width": 4, "actfunc": "none"}],
    ],
    "conv-valid-rect-maxpad": [
        ["conv", {"ksize": [3, 2], "chn": 3, "padding": "valid", "actfunc": "none"}],
        ["max", {"ksize": 3, "stride": 2, "padding": "same"}],
        ["conv", {"ksize": 3, "chn": 2, "stride": [2, 1]}],
    ],
    "conv-relu-avg-overlap": [
        ["conv", {"ksize": 3, "chn": 3, "padding": 1}],
        ["avg", {"ksize": 3, "stride": 2, "padding": "same", "actfunc": "sigmoid"}],
        6,
    ],
    "full-only": [["full", {"width": 6, "actfunc": "sigmoid"}], ["full", {"width": 5, "actfunc": "tanh"}], 4],
}

MODES = ["select", "binary", "regression", "dual_select"]


def _numeric(f, array, index):
    return numeric_grad(f, array, index, EPS)


def _check(model, x, y, rng):
    loss_of = lambda: model.compute_gradients(x, y)[0]  # noqa: E731
    _, grads, g_x, _ = model.compute_gradients(x, y)
    assert set(grads) == set(model.params)
    targets = [(key, model.params[key], grads[key]) for key in model.params] + [("input", x, g_x)]
    for key, array, grad in targets:
        assert grad.shape == array.shape, key
        flat = rng.choice(array.size, min(SAMPLES_PER_ARRAY, array.size), replace=False)
        for i in flat:
            index = np.unravel_index(i, array.shape)
            num = _numeric(loss_of, array, index)
            assert grad[index] == pytest.approx(num, rel=1e-5, abs=1e-8), f"{key}{index}"


def _net_and_batch(net: str, backend: str):
    """A float64 model of ``NETS[net]`` on a tiny dataset, and a batch of 4."""
    ds = tiny_dataset(n=12, shape=(7, 6, 2), classes=3, mode="select")
    model = CnnModel("grad", ds, None, NETS[net], backend=backend, dtype="float64", seed=5)
    x, y = ds.get_train_data(np.arange(4))
    return model, x, y


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gradients_match_finite_differences(net, backend):
    model, x, y = _net_and_batch(net, backend)
    _check(model, x.astype(np.float64), y, np.random.default_rng(0))


@pytest.mark.parametrize("mode", MODES)
def test_mode_gradients_match_finite_differences(mode):
    ds = tiny_dataset(n=12, shape=(5, 5, 1), classes=3, mode=mode)
    model = CnnModel("grad", ds, None, [["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 2}], 4],
                     backend="numpy", dtype="float64", seed=2)
    x, y = ds.get_train_data(np.arange(5))
    _check(model, x.astype(np.float64), y, np.random.default_rng(1))


def test_mode_values():
    ds = tiny_dataset(mode="dual_select")
    model = CnnModel("dual", ds, None, [], backend="numpy", dtype="float64")
    out = np.array([[0.0, np.log(3.0), 0.0, 0.0, np.log(2.0)]])
    y = np.array([[0.0, 1.0, 1.0, 0.0, 0.0]])
    loss, grad = model.mode.loss_grad(out, y)
    # domain CE: -log(3/4); object CE: -log(1/4)
    assert loss == pytest.approx(-np.log(0.75) - np.log(0.25))
    np.testing.assert_allclose(grad, [[0.25, -0.25, 0.25 - 1, 0.25, 0.5]])
    assert model.mode.accuracy(out, y) == (1.0, 0.0)
    np.testing.assert_allclose(model.mode.estimate(out), [[0.25, 0.75, 0.25, 0.25, 0.5]])
    reg = CnnModel("reg", tiny_dataset(mode="regression"), None, [], backend="numpy").mode
    # the book's regression accuracy: 1 - mean relative error
    assert reg.accuracy(np.array([[1.1], [1.8]]), np.array([[1.0], [2.0]])) == pytest.approx(0.9)


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_training_step_skips_only_the_input_gradient(net, backend):
    """compute_step (first layer without g_x) gives the same parameter gradients."""
    model, x, y = _net_and_batch(net, backend)
    loss, grads, g_x, _ = model.compute_gradients(x, y)
    assert g_x is not None and g_x.shape == x.shape
    step_loss, _, step_grads = model.compute_step(x, y)
    assert step_loss == loss
    assert set(step_grads) == set(grads)
    for key in grads:
        np.testing.assert_array_equal(step_grads[key], grads[key], err_msg=key)


@pytest.mark.parametrize("mb, outputs", [(1, 2), (7, 5), (10, 5), (33, 11)])
def test_select_accuracy_is_the_mean_of_argmax_hits(mb, outputs):
    """Select's accuracy (a count over the batch size) equals NumPy's mean of the argmax hits,
    as a Python float, for arrays and for nested lists of targets."""
    from fastcnn.modes import Select

    rng = np.random.default_rng(mb)
    out = rng.standard_normal((mb, outputs)).astype(np.float32)
    y = np.eye(outputs, dtype=np.float32)[rng.integers(0, outputs, mb)]
    want = float(np.mean(np.argmax(out, axis=1) == np.argmax(y, axis=1)))
    got = Select().accuracy(out, y)
    assert type(got) is float and got == want
    assert Select().accuracy(out, y.tolist()) == want
