"""``batch_normal`` (BOOK-CH8-9 3.5): finite-difference gradients in training mode on every
backend, the moving statistics, train vs inference, the book's simplified backward, and
the numba kernels against NumPy (values, and the same bits at 1 and 2 threads)."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import numeric_grad, tiny_dataset

from fastcnn import CnnModel, phase
from fastcnn.kernels import norm as np_norm

EPS = 1e-6
SAMPLES_PER_ARRAY = 12

NETS = {
    # BN on the raw input (maps), after a conv, and on a flat layer; one without rescale
    "maps": [["batch_normal"], ["conv", {"ksize": 3, "chn": 3, "actfunc": "tanh"}],
             ["batch_normal", {"epsilon": 1e-3}], ["max", {"stride": 2}], 4,
             ["batch_normal", {"rescale": False}]],
}


def _numeric(f, array, index):
    return numeric_grad(f, array, index, EPS)


def _model(backend, hconfigs=None, seed=5):
    ds = tiny_dataset(n=12, shape=(5, 4, 2), classes=3, mode="select")
    model = CnnModel("bn", ds, None, hconfigs or NETS["maps"], backend=backend, dtype="float64", seed=seed)
    x, y = ds.get_train_data(np.arange(4))
    return model, x.astype(np.float64), y


def _perturb_scale_shift(model, rng):
    """Scale/shift away from 1/0, so their gradients are not special cases."""
    for key, p in model.params.items():
        if key.endswith(("/scale", "/shift")):
            p[...] = rng.normal(1.0 if key.endswith("scale") else 0.0, 0.3, p.shape)


def test_gradients_match_finite_differences_in_training_mode(backend):
    model, x, y = _model(backend)
    rng = np.random.default_rng(0)
    _perturb_scale_shift(model, rng)
    loss_of = lambda: model.compute_gradients(x, y)[0]  # noqa: E731
    _, grads, g_x, _ = model.compute_gradients(x, y)
    trained = {k for k in model.params if not k.endswith(("/mavg", "/mvar"))}
    assert set(grads) == trained
    checked = 0
    for key, array, grad in [(k, model.params[k], grads.get(k)) for k in model.params] + [("x", x, g_x)]:
        for i in rng.choice(array.size, min(SAMPLES_PER_ARRAY, array.size), replace=False):
            index = np.unravel_index(i, array.shape)
            num = _numeric(loss_of, array, index)
            if grad is None:  # moving statistics: the training loss does not read them
                assert num == 0.0, f"{key}{index}"
                continue
            assert grad[index] == pytest.approx(num, rel=1e-5, abs=1e-8), f"{key}{index}"
            checked += 1
    assert checked > 60


def test_inference_mode_gradient_is_exact_too():
    """With moving statistics the normalization is affine in x: g_x = g_y * scale / std."""
    model, x, y = _model("numpy", [["batch_normal", {"exp_ratio": 0.5}]])
    model.compute_gradients(x, y)  # move the statistics away from 0 / 1
    with phase.inference():
        out, auxes = model.forward(x)
    layer = model.layers[0]
    g = np.random.default_rng(1).normal(size=x.shape)
    g_x, _ = layer.backward(g, auxes[0])
    std = np.sqrt(layer.params["mvar"] + layer.epsilon)
    np.testing.assert_allclose(g_x, g * layer.params["scale"] / std, rtol=1e-12)


def test_book_simplified_backward_with_exact_false(backend):
    model, x, y = _model(backend, [["batch_normal", {"exact": False}], 3])
    layer = model.layers[0]
    layer.params["scale"][:] = [2.0, 0.5]
    with phase.training():
        _, aux = layer.forward(x)
    g = np.random.default_rng(2).normal(size=x.shape)
    g_x, grads = layer.backward(g, aux)
    std = x.reshape(-1, 2).std(axis=0)
    np.testing.assert_allclose(g_x, g * np.array([2.0, 0.5]) / np.sqrt(std**2 + 1e-10), rtol=1e-10)
    norm = (x - x.reshape(-1, 2).mean(axis=0)) / np.sqrt(std**2 + 1e-10)
    np.testing.assert_allclose(grads["scale"], (g * norm).reshape(-1, 2).sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(grads["shift"], g.reshape(-1, 2).sum(axis=0), rtol=1e-10)


def test_training_uses_batch_statistics_and_moves_the_averages():
    model, x, y = _model("numpy", [["batch_normal", {"exp_ratio": 0.25, "rescale": False}]])
    layer = model.layers[0]
    with phase.training():
        y_train, _ = layer.forward(x)
    flat = x.reshape(-1, 2)
    mean, var = flat.mean(axis=0), flat.var(axis=0)
    np.testing.assert_allclose(y_train, (x - mean) / np.sqrt(var + 1e-10), rtol=1e-12)
    # mavg += r (mean - mavg) from 0; mvar += r (var - mvar) from 1
    np.testing.assert_allclose(layer.params["mavg"], 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.params["mvar"], 1 + 0.25 * (var - 1), rtol=1e-12)
    before = {k: v.copy() for k, v in layer.params.items()}
    y_test, _ = layer.forward(x)  # inference (the default): moving statistics, not updated
    np.testing.assert_allclose(y_test, (x - 0.25 * mean) / np.sqrt(1 + 0.25 * (var - 1) + 1e-10), rtol=1e-12)
    for k in before:
        np.testing.assert_array_equal(before[k], layer.params[k])


def test_predict_test_and_validation_use_moving_statistics():
    """predict (and so test, visualize, validation) is inference: batch of one works and each
    sample's output does not depend on the rest of its batch."""
    net = [["batch_normal", {"exp_ratio": 0.5}], ["full", {"width": 3, "actfunc": "tanh"}]]
    model, x, _ = _model("numpy", net)
    whole = model.predict(x)
    single = np.concatenate([model.predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(whole, single, rtol=1e-12)
    with phase.training():  # in training a sample's output depends on its batch
        batch_out, _ = model.forward(x)
        one_out, _ = model.forward(x[:1])
    assert not np.allclose(batch_out[:1], one_out)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("exact", [True, False])
def test_numba_kernels_match_numpy(dtype, exact):
    pytest.importorskip("numba")
    from fastcnn.kernels import numba_norm

    rng = np.random.default_rng(3)
    x = (rng.normal(2.0, 3.0, (1300, 5))).astype(dtype)  # 3 chunks of rows
    g = rng.normal(size=x.shape).astype(dtype)
    scale = rng.normal(1, 0.2, 5).astype(dtype)
    shift = rng.normal(0, 0.2, 5).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    got = numba_norm.bn_stats(x)
    want = np_norm.bn_stats(x)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol)
    inv = 1 / np.sqrt(want[1] + 1e-5)
    for s, t in ((scale, shift), (None, None)):
        for a, b in zip(numba_norm.bn_normalize(x, want[0], inv, s, t),
                        np_norm.bn_normalize(x, want[0], inv, s, t), strict=True):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        norm = np_norm.bn_normalize(x, want[0], inv, s, t)[0]
        for a, b in zip(numba_norm.bn_backward(g, norm, inv, s, exact),
                        np_norm.bn_backward(g, norm, inv, s, exact), strict=True):
            if b is None:
                assert a is None
                continue
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=tol, atol=50 * tol)


def test_numba_kernels_same_bits_on_one_and_two_threads():
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 numba threads")
    from fastcnn.kernels import numba_norm

    rng = np.random.default_rng(4)
    x = rng.normal(size=(5000, 7)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            mean, var = numba_norm.bn_stats(x)
            inv = 1 / np.sqrt(var + 1e-10)
            norm, _ = numba_norm.bn_normalize(x, mean, inv, None, None)
            grads = numba_norm.bn_backward(g, norm, inv, np.ones(7, np.float32), True)
            results.append((mean, var, norm, *grads))
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("settings, key, message", [
    ({"epsilon": 0}, "epsilon", r"must be in \(0"),
    ({"exp_ratio": 1.5}, "exp_ratio", r"must be in \(0"),
    ({"rescale": "yes"}, "rescale", "must be True or False"),
    ({"momentum": 0.9}, "momentum", "unknown key"),
])
def test_bad_settings_named_by_layer_and_key(settings, key, message):
    with pytest.raises((ValueError, TypeError), match=rf"layer 1 \('batch_normal'\), key '{key}': {message}"):
        CnnModel("bad", tiny_dataset(), None, [4, ["batch_normal", settings]], backend="numpy")


def test_moving_statistics_are_saved_and_loaded(tmp_path):
    model, x, y = _model("numpy", [["batch_normal", {"exp_ratio": 0.5}], 3])
    model.compute_gradients(x, y)
    path = model.save_params(tmp_path / "bn.npz")
    other, _, _ = _model("numpy", [["batch_normal", {"exp_ratio": 0.5}], 3], seed=9)
    other.load_params(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def _need_aot():
    from fastcnn.kernels import backend_available

    pytest.importorskip("numba")
    if not backend_available("numba-aot"):
        pytest.skip("numba-aot not built (make aot)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_aot_kernels_same_bits_as_numba(dtype):
    """numba-aot runs numba_norm's kernels built ahead of time: the JIT's bits, whole and cut
    (20000 rows: _bn_normalize is cut over the worker threads, the sums run in 40 chunks)."""
    _need_aot()
    from fastcnn.kernels import aot_norm, numba_norm

    rng = np.random.default_rng(6)
    x = rng.normal(1.0, 2.0, (20000, 6)).astype(dtype)
    g = rng.normal(size=x.shape).astype(dtype)
    scale = rng.normal(1, 0.2, 6).astype(dtype)
    shift = rng.normal(0, 0.2, 6).astype(dtype)
    for a, b in zip(numba_norm.bn_stats(x), aot_norm.bn_stats(x), strict=True):
        assert np.array_equal(a, b), "bn_stats"
    mean, var = numba_norm.bn_stats(x)
    inv = 1 / np.sqrt(var + 1e-10)
    for s, t in ((scale, shift), (None, None)):
        jit, built = numba_norm.bn_normalize(x, mean, inv, s, t), aot_norm.bn_normalize(x, mean, inv, s, t)
        for a, b in zip(jit, built, strict=True):
            assert a.dtype == dtype and np.array_equal(a, b), "bn_normalize"
        for exact in (True, False):
            jit_g = numba_norm.bn_backward(g, built[0], inv, s, exact)
            built_g = aot_norm.bn_backward(g, built[0], inv, s, exact)
            for a, b in zip(jit_g, built_g, strict=True):
                assert (a is None and b is None) or np.array_equal(a, b), f"bn_backward exact={exact}"


def test_numba_and_numba_aot_train_batch_norm_to_the_same_bits():
    """A float32 model with batch norm (raw input, conv 'LAB', flat) trained 3 steps: the same
    parameters and moving statistics, bit for bit, on numba and numba-aot."""
    _need_aot()
    net = [["batch_normal"], ["conv", {"ksize": 3, "chn": 8, "actions": "LAB"}], ["max", {"stride": 2}],
           6, ["batch_normal"]]
    ds = tiny_dataset(n=40, shape=(12, 10, 3), classes=3, mode="select")
    x, y = ds.get_train_data(np.arange(32))
    params = {}
    for backend in ("numba", "numba-aot"):
        model = CnnModel("bn", ds, None, net, backend=backend, seed=7)
        for _ in range(3):
            _, _, grads = model.compute_step(x, y)
            model.optimizer.update(model.params, grads)
        params[backend] = {k: v.copy() for k, v in model.params.items()}
    assert params["numba"].keys() == params["numba-aot"].keys()
    for key, value in params["numba"].items():
        assert np.array_equal(value, params["numba-aot"][key]), key
