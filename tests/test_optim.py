"""Optimizer update rules against values computed by hand (seed 004's formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn.optim import OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, make_optimizer


def _params():
    return {"w": np.array([1.0, -2.0, 0.5]), "b": np.array([0.25])}


G1 = {"w": np.array([0.1, -0.2, 0.4]), "b": np.array([1.0])}
G2 = {"w": np.array([-0.3, 0.1, 0.0]), "b": np.array([0.5])}


def test_sgd():
    p = _params()
    SGD(lr=0.1).update(p, G1)
    np.testing.assert_allclose(p["w"], [0.99, -1.98, 0.46])
    np.testing.assert_allclose(p["b"], [0.15])


def test_momentum_two_steps():
    p, opt = _params(), Momentum(lr=0.1, momentum=0.9)
    opt.update(p, G1)
    opt.update(p, G2)
    v1 = -0.1 * G1["w"]
    v2 = 0.9 * v1 - 0.1 * G2["w"]
    np.testing.assert_allclose(p["w"], _params()["w"] + v1 + v2)
    # hand values: v1 = [-0.01, 0.02, -0.04]; v2 = [0.021, 0.008, -0.036]
    np.testing.assert_allclose(p["w"], [1.011, -1.972, 0.424])


def test_adagrad_two_steps():
    p, opt = _params(), AdaGrad(lr=0.1)
    opt.update(p, G1)
    opt.update(p, G2)
    h1 = G1["w"] ** 2
    h2 = h1 + G2["w"] ** 2
    expected = _params()["w"] - 0.1 * G1["w"] / np.sqrt(h1 + 1e-7) - 0.1 * G2["w"] / np.sqrt(h2 + 1e-7)
    np.testing.assert_allclose(p["w"], expected)
    # first step moves every weight by lr * sign(g) (to ~1e-6)
    np.testing.assert_allclose(p["b"], [0.25 - 0.1 - 0.1 * 0.5 / np.sqrt(1.25)], rtol=1e-6)


def test_adam_two_steps_with_lr_t_bias_correction():
    p, opt = _params(), Adam(lr=0.01, beta1=0.9, beta2=0.999)
    opt.update(p, G1)
    # step 1: m = 0.1 g, v = 0.001 g^2, lr_t = 0.01 * sqrt(0.001) / 0.1 -> update = 0.01 * g/|g|
    np.testing.assert_allclose(p["w"], _params()["w"] - 0.01 * np.sign(G1["w"]), rtol=1e-5)
    opt.update(p, G2)
    m = 0.9 * 0.1 * G1["w"] + 0.1 * G2["w"]
    v = 0.999 * 0.001 * G1["w"] ** 2 + 0.001 * G2["w"] ** 2
    lr_t = 0.01 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    step1 = 0.01 * np.sqrt(0.001) / 0.1 * (0.1 * G1["w"]) / (np.sqrt(0.001 * G1["w"] ** 2) + 1e-7)
    w1 = _params()["w"] - step1
    np.testing.assert_allclose(p["w"], w1 - lr_t * m / (np.sqrt(v) + 1e-7), rtol=1e-12)
    assert opt.iter == 2


def test_optimizer_table_and_choice():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "adagrad", "adam"}
    assert isinstance(make_optimizer(None, use_adam=True), Adam)
    assert isinstance(make_optimizer(None, use_adam=False), SGD)
    assert isinstance(make_optimizer("Momentum"), Momentum)
    mine = AdaGrad(0.5)
    assert make_optimizer(mine) is mine
    with pytest.raises(TypeError, match="optimizer must be a name"):
        make_optimizer(42)


def test_model_uses_optimizer_and_learning_rate():
    ds = tiny_dataset()
    assert isinstance(CnnModel("m", ds, None, [4], backend="numpy").optimizer, Adam)
    assert isinstance(CnnModel("m", ds, None, [4], use_adam=False, backend="numpy").optimizer, SGD)
    model = CnnModel("m", ds, None, [4], optimizer="sgd", backend="numpy", seed=3, dtype="float64")
    before = {k: v.copy() for k, v in model.params.items()}
    x, y = ds.get_train_data(np.arange(5))
    _, grads, _, _ = model.compute_gradients(x, y)
    model.optimizer.lr = 0.5
    model.optimizer.update(model.params, grads)
    for key in before:
        np.testing.assert_allclose(model.params[key], before[key] - 0.5 * grads[key])
    # the layers see the update: model.params holds the layers' own arrays
    assert model.layers[0].params["w"] is model.params["layer00_full/w"]


@pytest.mark.parametrize("name", ["momentum", "adagrad", "adam"])
def test_state_arrays_are_made_once(name, monkeypatch):
    """Updates after the first allocate no state: the same arrays are updated in place."""
    opt = OPTIMIZERS[name](lr=0.1)
    p = _params()
    opt.update(p, G1)
    states = {attr: dict(getattr(opt, attr)) for attr in ("m", "v", "h") if hasattr(opt, attr)}
    made = []
    real = np.zeros_like
    monkeypatch.setattr(np, "zeros_like", lambda *a, **k: made.append(a) or real(*a, **k))
    opt.update(p, G2)
    opt.update(p, G1)
    assert made == []
    for attr, before in states.items():
        assert before.keys() == {"w", "b"}
        for key, array in getattr(opt, attr).items():
            assert array is before[key], (attr, key)
