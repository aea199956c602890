"""Composite layers (serial, parallel, add, loop, custom) and conv ``actions``: float64
finite-difference gradients on every backend, parameter names, steps, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import numeric_grad, tiny_dataset

from fastcnn import CnnModel
from fastcnn.layers.composite import Add
from fastcnn.macros import MACROS, set_macro
from fastcnn.steps import ConvPoolStep, LayerStep

# backends outside tests/conftest.py's FAST_BACKENDS (conftest cannot be imported by name: two exist)
SLOW_BACKENDS = ("better", "adhoc")

EPS = 1e-6

#: a macro of the tests' own, with arguments (registered once, under a name no book macro uses)
TEST_MACRO = ["add", {"x": True}, ["serial", ["conv", {"ksize": 3, "chn": "#n", "actions": "#act"}],
                                   ["conv", {"ksize": 1, "chn": "#n", "actfunc": "tanh"}]]]

NETS = {
    # x (2 channels) tiled x2 onto child 0's 4; child 1 (1 channel) tiled x4; tanh after the sum
    "add-tiled": [["add", {"x": True, "actions": "A", "actfunc": "tanh"},
                   ["conv", {"ksize": 3, "chn": 4, "actfunc": "tanh"}],
                   ["conv", {"ksize": 1, "chn": 1, "actfunc": "sigmoid"}]]],
    # uneven branches: 1 + 3 + 2 (the input's) channels; E3 would send channels 0.. to every branch
    "parallel-uneven": [["parallel", ["conv", {"ksize": 1, "chn": 1, "actfunc": "tanh"}],
                         ["serial", ["conv", {"ksize": 3, "chn": 2, "actfunc": "sigmoid"}],
                          ["conv", {"ksize": [1, 3], "chn": 3, "actfunc": "tanh"}]],
                         ["avg", {"ksize": 3, "stride": 1, "padding": "same"}]]],
    "loop": [["loop", {"repeat": 3}, ["conv", {"ksize": 3, "chn": 2, "actfunc": "tanh"}]]],
    "serial": [["serial", ["conv", {"ksize": 3, "chn": 3, "actfunc": "sigmoid"}], ["max", {"stride": 2}], 4]],
    "custom": [["custom", {"name": "test_residual", "args": {"#n": 2, "#act": "LA"}}]],
    # batch norm (training mode, exact gradient) inside conv actions and after an add
    "actions-B": [["conv", {"ksize": 3, "chn": 3, "actions": "LAB", "actfunc": "tanh"}],
                  ["add", {"x": False, "actions": "AB", "actfunc": "sigmoid"},
                   ["conv", {"ksize": 1, "chn": 2, "actions": "BLA", "actfunc": "none"}]]],
}


@pytest.fixture(autouse=True, scope="module")
def _test_macro():
    set_macro("test_residual", TEST_MACRO)
    yield
    MACROS.pop("test_residual", None)


def _numeric(f, array, index):
    return numeric_grad(f, array, index, EPS)


def _model(net, backend, shape=(4, 4, 2), seed=3, **kw):
    ds = tiny_dataset(n=12, shape=shape, classes=3, mode="select")
    return CnnModel("comp", ds, None, NETS[net], backend=backend, dtype="float64", seed=seed, **kw), ds


@pytest.mark.parametrize("net", list(NETS))
def test_composite_gradients_match_finite_differences(net, backend):
    model, ds = _model(net, backend)
    x, y = ds.get_train_data(np.arange(2))
    x = x.astype(np.float64)
    loss_of = lambda: model.compute_gradients(x, y)[0]  # noqa: E731
    _, grads, g_x, _ = model.compute_gradients(x, y)
    state = {k for k in model.params if k.endswith(("/mavg", "/mvar"))}  # batch-norm statistics: no gradient
    assert set(grads) == set(model.params) - state
    per_array = 2 if backend in SLOW_BACKENDS else 6
    rng = np.random.default_rng(0)
    targets = [(key, model.params[key], grads[key]) for key in grads] + [("input", x, g_x)]
    for key, array, grad in targets:
        assert grad.shape == array.shape, key
        for i in rng.choice(array.size, min(per_array, array.size), replace=False):
            index = np.unravel_index(i, array.shape)
            assert grad[index] == pytest.approx(_numeric(loss_of, array, index), rel=1e-5, abs=1e-8), \
                f"{key}{index}"


def test_parameter_names_are_nested_unique_and_stable():
    model, _ = _model("custom", "numpy")
    assert list(model.params) == [
        "layer00_custom/0_add/0_serial/0_conv/k", "layer00_custom/0_add/0_serial/0_conv/b",
        "layer00_custom/0_add/0_serial/1_conv/k", "layer00_custom/0_add/0_serial/1_conv/b",
        "layer01_full/w", "layer01_full/b",
    ]
    loop, _ = _model("loop", "numpy")
    assert [k for k in loop.params if k.endswith("/k")] == [f"layer00_loop/{i}_conv/k" for i in range(3)]
    # each copy of a loop has its own parameters
    ks = [loop.params[f"layer00_loop/{i}_conv/k"] for i in range(3)]
    assert not np.shares_memory(ks[0], ks[1]) and not np.array_equal(ks[0], ks[1])
    # nested layers' keys are their parameter prefixes (also their workspace names)
    add = model.layers[0].children[0]
    prefix = "layer00_custom/0_add/0_serial"
    assert [c.key for c in add.walk()] == [prefix, f"{prefix}/0_conv", f"{prefix}/1_conv"]


def test_save_load_round_trip_with_nested_layers(tmp_path):
    a, ds = _model("parallel-uneven", "numpy", seed=1)
    b, _ = _model("parallel-uneven", "numpy", seed=2)
    x, _ = ds.get_train_data(np.arange(3))
    assert not np.allclose(a.predict(x), b.predict(x))
    b.load_params(a.save_params(tmp_path / "p.npz"))
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_a_composite_is_one_step_and_fusion_stays_top_level():
    hconfigs = [["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 2}],
                ["serial", ["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 1}]],
                ["conv", {"ksize": 3, "chn": 2, "actions": "LAB"}], ["max", {"stride": 1}]]
    ds = tiny_dataset(n=12, shape=(6, 6, 2))
    model = CnnModel("steps", ds, None, hconfigs, backend="numba", seed=0)
    kinds = [type(s) for s in model.steps]
    assert kinds[1:] == [LayerStep, LayerStep, LayerStep, LayerStep]  # serial; LAB conv; max; output
    assert kinds[0] in (ConvPoolStep, LayerStep)  # fused where the backend fuses, as before
    if model.ops.fuses_conv_pool:
        assert kinds[0] is ConvPoolStep


def test_composites_train_on_every_backend(backend):
    """A few training steps through ``train`` lower the cost, with the same start on every backend."""
    ds = tiny_dataset(n=24, shape=(4, 4, 2), classes=3)
    model = CnnModel("train", ds, None, NETS["add-tiled"] + NETS["parallel-uneven"], backend=backend, seed=4)
    x, y = ds.get_train_data(np.arange(8))
    before = model.compute_gradients(x, y)[0]
    model.train(epoch_count=6, batch_size=8, learning_rate=0.01, report=0, progress=False)
    assert model.compute_gradients(x, y)[0] < before


def test_add_is_out_of_place_and_tiles_whole():
    """E5: the sum never lands in a child's output; channel j gets term[..., j % chn]."""
    out = np.zeros((1, 2, 2, 6))
    term = np.arange(8.0).reshape(1, 2, 2, 2)
    Add._add_tiled(out, term, 3)
    np.testing.assert_array_equal(out, np.tile(term, (1, 1, 1, 3)))
    np.testing.assert_array_equal(Add._fold(np.tile(term, (1, 1, 1, 3)), 3), 3 * term)
    # with a pass-through first child (max 1x1), the input is not modified by the add
    ds = tiny_dataset(n=12, shape=(4, 4, 2))
    model = CnnModel("inplace", ds, None, [["add", {"x": True}, ["max", {"stride": 1}]]], backend="numpy",
                     dtype="float64", seed=0)
    x, _ = ds.get_train_data(np.arange(2))
    x = x.astype(np.float64)
    keep = x.copy()
    y, _ = model.layers[0].forward(x)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_allclose(y, 2 * keep)


@pytest.mark.parametrize("net", ["add-tiled", "parallel-uneven", "loop", "actions-B"])
def test_workspace_step_equals_plain_gradients(net, fast_backend):
    """``compute_step`` (reused workspace arrays, nested keys) gives the plain gradients, twice."""
    model, ds = _model(net, fast_backend)
    x, y = ds.get_train_data(np.arange(4))
    _, grads, _, _ = model.compute_gradients(x, y)
    for _ in range(2):
        _, _, step_grads = model.compute_step(x, y)
        assert set(step_grads) == set(grads)
        for key in grads:
            np.testing.assert_allclose(step_grads[key], grads[key], rtol=1e-12, atol=1e-14, err_msg=key)
