"""The book's chapter 8 besides batch norm: dropout, noise, L2/L1 decay, ``CnnRegModel``,
the ``['output']`` marker, the ``deepconvnet`` preset and ``show_params``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel, CnnRegModel, phase, runtime
from fastcnn.datasets.base import ArrayDataset
from fastcnn.kernels import masks
from fastcnn.layers import Dropout, Noise
from fastcnn.optim import SGD, Adam
from fastcnn.regularize import collect_params, near_zero_line
from fastcnn.zoo import get_preset

EPS = 1e-6
NET = [["noise", {"std": 0.2}], ["conv", {"ksize": 3, "chn": 3, "actfunc": "tanh"}],
       ["dropout", {"keep_prob": 0.6}], ["max", {"stride": 2}], ["full", {"width": 4, "actfunc": "tanh"}],
       ["dropout", {"keep_prob": 0.5}], ["noise", {"std": 0.1, "ratio": 0.5}]]


def _model(backend="numpy", hconfigs=NET, seed=5, **kw):
    ds = tiny_dataset(n=12, shape=(5, 4, 2), classes=3, mode="select")
    model = CnnModel("reg", ds, None, hconfigs, backend=backend, dtype="float64", seed=seed, **kw)
    x, y = ds.get_train_data(np.arange(4))
    return model, x.astype(np.float64), y


def _fixed_draws(model):
    """Every stochastic layer restarts the same stream: one fixed mask / noise per call."""
    for layer in model.layers:
        if isinstance(layer, (Dropout, Noise)):
            layer.rng = np.random.default_rng(7 + layer.spec.index)


def test_gradients_match_finite_differences_with_fixed_masks(backend):
    model, x, y = _model(backend)

    def run():
        _fixed_draws(model)
        return model.compute_gradients(x, y)

    _, grads, g_x, _ = run()
    assert set(grads) == set(model.params)
    # the masks really zero some entries: the dropout output differs from its input
    with phase.training():
        _fixed_draws(model)
        h = model.layers[1].forward(model.layers[0].forward(x)[0])[0]
        assert np.count_nonzero(model.layers[2].forward(h)[0] == 0) > 0
    rng = np.random.default_rng(0)
    for key, array, grad in [(k, model.params[k], grads[k]) for k in model.params] + [("x", x, g_x)]:
        for i in rng.choice(array.size, min(10, array.size), replace=False):
            index = np.unravel_index(i, array.shape)
            old = array[index]
            array[index] = old + EPS
            up = run()[0]
            array[index] = old - EPS
            down = run()[0]
            array[index] = old
            assert grad[index] == pytest.approx((up - down) / (2 * EPS), rel=1e-5, abs=1e-8), f"{key}{index}"


def test_dropout_values_train_and_inference():
    model, x, _ = _model(hconfigs=[["dropout", {"keep_prob": 0.25}]])
    layer = model.layers[0]
    y_test, aux = layer.forward(x)
    assert y_test is x and aux is None  # inference: the same array
    with phase.training():
        _fixed_draws(model)
        y_train, mask = layer.forward(x)
    key = int(np.random.default_rng(7).integers(0, masks.KEY_LIMIT))  # one key per call
    kept = (masks.uniforms(key, x.size) < 0.25).reshape(x.shape)  # every element, batch axis too
    np.testing.assert_array_equal(y_train, np.where(kept, x / 0.25, 0.0))
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g, mask)[0], np.where(kept, 4.0, 0.0))
    assert 0.15 < kept.mean() < 0.35


def test_noise_values_train_and_inference():
    model, x, _ = _model(hconfigs=[["noise", {"mean": 1.0, "std": 0.5}]])
    layer = model.layers[0]
    assert layer.forward(x)[0] is x
    with phase.training():
        _fixed_draws(model)
        y, _ = layer.forward(x)
    rng = np.random.default_rng(7)
    assert rng.random() < 1.0  # the one uniform draw per call (ratio 1: always noisy)
    key = int(rng.integers(0, masks.KEY_LIMIT))  # then the call's key
    np.testing.assert_allclose(y, x + (1.0 + 0.5 * masks.normals(key, x.size).reshape(x.shape)), rtol=1e-14)
    np.testing.assert_array_equal(layer.backward(x, None)[0], x)  # identity backward


def test_noise_ratio_zero_never_adds_noise():
    model, x, _ = _model(hconfigs=[["noise", {"ratio": 0.0}]])
    with phase.training():
        assert all(model.layers[0].forward(x)[0] is x for _ in range(5))


def test_predict_is_deterministic_and_training_is_not():
    model, x, y = _model()
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    first = model.compute_gradients(x, y)[0]
    assert model.compute_gradients(x, y)[0] != first  # fresh masks each training step


def test_output_marker_places_the_output_layer():
    model, x, _ = _model(hconfigs=[4, ["output"], ["dropout", {"keep_prob": 0.5}]])
    assert [la.key for la in model.layers] == ["layer00_full", "layer01_full", "layer02_dropout"]
    assert model.layers[1].output_shape == (3,) and model.layers[1].spec.actfunc == "none"
    with pytest.raises(ValueError, match=r"layer 2 \('full'\): cannot follow the output layer"):
        _model(hconfigs=[4, ["output"], 5])
    with pytest.raises(ValueError, match=r"layer 1 \('output'\): a second output marker"):
        _model(hconfigs=[["output"], ["output"]])
    with pytest.raises(ValueError, match=r"layer 0 \('output'\), key 'width': unknown key"):
        _model(hconfigs=[["output", {"width": 3}]])


@pytest.mark.parametrize("hconfig, key, message", [
    (["dropout", {"keep_prob": 0}], "keep_prob", r"must be in \(0.0, 1.0\], got 0.0"),
    (["dropout", {"keep_prob": 1.5}], "keep_prob", r"must be in \(0.0, 1.0\], got 1.5"),
    (["dropout", {"keep_prob": -0.1}], "keep_prob", "must be in"),
    (["dropout", {"keep_prob": "half"}], "keep_prob", "must be a number"),
    (["dropout", {"ratio": 0.5}], "ratio", "unknown key"),
    (["noise", {"type": "uniform"}], "type", "unknown noise type 'uniform'; valid: normal"),
    (["noise", {"std": -1}], "std", "must be in"),
    (["noise", {"ratio": 2}], "ratio", "must be in"),
    (["noise", {"mean": None}], "mean", "must be a number"),
])
def test_bad_settings_named_by_layer_and_key(hconfig, key, message):
    with pytest.raises((ValueError, TypeError), match=rf"layer 1 \('{hconfig[0]}'\), key '{key}': {message}"):
        _model(hconfigs=[4, hconfig])


def _train_masks(threads: int) -> dict:
    runtime.set_num_threads(threads)
    try:
        ds = tiny_dataset(n=40, shape=(6, 6, 2), classes=3, seed=2)
        model = CnnModel("det", ds, None, NET, backend="numba", seed=3)
        model.train(epoch_count=2, batch_size=8, learning_rate=0.01, progress=False)
    finally:
        runtime.set_num_threads(None)
    return {k: v.copy() for k, v in model.params.items()}


def test_masks_and_training_identical_at_one_and_two_threads():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 numba threads")
    one, two = _train_masks(1), _train_masks(2)
    for key in one:
        assert np.array_equal(one[key], two[key]), key


# --------------------------------------------------------------------------
# weight decay
# --------------------------------------------------------------------------


def test_decay_cost_is_the_scaled_penalty_over_weights_only():
    hc = [["conv", {"ksize": 3, "chn": 2}], ["batch_normal"], 4]
    plain, x, y = _model(hconfigs=hc)
    reg, _, _ = _model(hconfigs=hc, l2_decay=0.1, l1_decay=0.01)
    weights = [reg.params[k] for k in ("layer03_full/w", "layer00_conv/k", "layer02_full/w")]
    assert reg.decay.keys == ("layer03_full/w", "layer00_conv/k", "layer02_full/w")  # the book's order
    want = sum(0.1 * (w**2).sum() / 2 + 0.01 * np.abs(w).sum() for w in weights)
    loss_plain, grads_plain, _, _ = plain.compute_gradients(x, y)
    loss_reg, grads_reg, _, _ = reg.compute_gradients(x, y)
    assert loss_reg - loss_plain == pytest.approx(want, rel=1e-12)
    for key in grads_plain:  # decay enters the update, not the gradients (decoupled)
        np.testing.assert_array_equal(grads_plain[key], grads_reg[key])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_decay_update_matches_a_hand_computation(optimizer):
    model, x, y = _model(hconfigs=[["conv", {"ksize": 3, "chn": 2}], 4], l2_decay=0.1, l1_decay=0.02,
                         optimizer=optimizer)
    model.params["layer00_conv/k"][0, 0, 0, 0] = 0.0  # sign(0) = 0: l1 leaves it alone
    lr = 0.05
    model.optimizer.lr = lr
    before = {k: v.copy() for k, v in model.params.items()}
    _, grads, _, _ = model.compute_gradients(x, y)
    model.optimizer.update(model.params, grads)
    for key, p in before.items():
        g = grads[key]
        if optimizer == "adam":  # first step: m = 0.1 g, v = 0.001 g^2, lr_t = lr sqrt(0.001) / 0.1
            step = lr * np.sqrt(1 - 0.999) / (1 - 0.9) * (0.1 * g) / (np.sqrt(0.001 * g * g) + 1e-7)
        else:
            step = lr * g
        if key.endswith(("/k", "/w")):
            step = step + lr * (0.1 * p + 0.02 * np.sign(p))
        np.testing.assert_allclose(model.params[key], p - step, rtol=1e-12, atol=1e-15, err_msg=key)


def test_decay_is_validated_and_needs_an_optimizer_that_decays():
    with pytest.raises(ValueError, match="l2_decay must be a number >= 0"):
        _model(l2_decay=-1)
    with pytest.raises(ValueError, match="l1_decay must be a number >= 0"):
        _model(l1_decay="0.1")

    class Plain:
        lr = 0.1

        def update(self, params, grads):
            pass

    with pytest.raises(TypeError, match="set_decay"):
        _model(l2_decay=0.1, optimizer=Plain())
    assert isinstance(_model(l2_decay=0.1, optimizer=SGD())[0].optimizer, SGD)


def test_cnn_reg_model_has_the_books_signature():
    ds = tiny_dataset(n=12, shape=(5, 4, 2))
    model = CnnRegModel("r", ds, [4], False, 0.1, 0.01, backend="numpy", seed=1)
    assert isinstance(model, CnnModel) and isinstance(model.optimizer, Adam)
    assert (model.decay.l2, model.decay.l1) == (0.1, 0.01)
    assert model.mode.name == "select" and model.optimizer.decay is model.decay


def test_show_params_prints_the_near_zero_line_and_draws_the_histogram(tmp_path, capsys):
    ds = tiny_dataset(n=40, shape=(4, 4, 1), classes=3)
    model = CnnRegModel("l1", ds, [8], l1_decay=0.5, backend="numpy", seed=1, plot_dir=tmp_path)
    model.exec_all(epoch_count=3, batch_size=10, learning_rate=0.01, show_cnt=0, show_params=True)
    out = capsys.readouterr().out
    values = collect_params(model.params)
    assert values.size == 16 * 8 + 8 * 3
    line = near_zero_line(values)
    assert line in out and line.startswith("Near 0 parameters = ")
    assert (tmp_path / "param_dist.png").stat().st_size > 1000
    assert near_zero_line(np.array([0.0, 1e-5, -1e-5, 2e-5])) == "Near 0 parameters = 75.0%(3/4)"
    assert near_zero_line(np.ones(829790)) == "Near 0 parameters =  0.0%(0/829790)"


# --------------------------------------------------------------------------
# deepconvnet
# --------------------------------------------------------------------------


def test_deepconvnet_preset_shapes_and_training_step():
    rng = np.random.default_rng(0)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 20)]
    ds = ArrayDataset("m", rng.random((20, 28, 28, 1)).astype(np.float32), ys, "select", list("0123456789"))
    model = CnnModel("deep", ds, None, get_preset("deepconvnet"), backend="numpy", seed=1)
    shapes = [(la.spec.type, la.output_shape) for la in model.layers]
    assert shapes == [
        ("conv", (28, 28, 16)), ("conv", (28, 28, 16)), ("max", (14, 14, 16)),
        ("conv", (14, 14, 32)), ("conv", (16, 16, 32)), ("max", (8, 8, 32)),
        ("conv", (8, 8, 64)), ("conv", (8, 8, 64)), ("max", (4, 4, 64)),
        ("full", (50,)), ("dropout", (50,)), ("full", (10,)), ("dropout", (10,)),
    ]
    weights = [k for k in model.params if k.endswith(("/k", "/w"))]
    assert len(weights) == 8  # DLfS W1..W8
    # He init: std sqrt(2 / fan_in); the output layer (no activation) sqrt(1 / 50)
    assert model.params["layer00_conv/k"].std() == pytest.approx(np.sqrt(2 / 9), rel=0.15)
    assert model.params["layer09_full/w"].std() == pytest.approx(np.sqrt(2 / 1024), rel=0.05)
    cost, _, grads = model.compute_step(*ds.get_train_data(np.arange(4)))
    assert np.isfinite(cost) and set(grads) == set(model.params)


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


def test_cli_trains_chapter8_layers_with_decay(tmp_path, capsys):
    from fastcnn import cli

    hconfig = json.dumps([["noise", {"std": 0.05}], ["conv", {"ksize": 3, "chn": 4}], ["batch_normal"],
                          ["max", {"stride": 2}], ["dropout", {"keep_prob": 0.8}], 16, ["output"],
                          ["dropout", {"keep_prob": 0.9}]])
    out = tmp_path / "run"
    code = cli.main(["train", "--epochs", "1", "--hconfig", hconfig, "--backend", "numpy", "--show", "0",
                     "--batch-size", "64", "--l2-decay", "0.01", "--l1-decay", "0.001", "--show-params",
                     "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Near 0 parameters = " in printed and "param_dist.png" in printed
    summary = json.loads((out / "history.json").read_text())
    assert (summary["l2_decay"], summary["l1_decay"]) == (0.01, 0.001)
    with np.load(out / "params.npz") as params:
        assert "layer02_batch_normal/mavg" in params.files


@pytest.mark.parametrize("argv, message", [
    (["--l2-decay", "-0.1"], "--l2-decay: expected a number >= 0"),
    (["--l1-decay", "nan"], "--l1-decay: expected a number >= 0"),
    (["--hconfig", '[["dropout", {"keep_prob": 0}]]'], r"layer 0 \('dropout'\), key 'keep_prob'"),
])
def test_cli_bad_decay_and_layer_settings_exit_2(argv, message, tmp_path, capsys):
    from fastcnn import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--backend", "numpy", *argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)
