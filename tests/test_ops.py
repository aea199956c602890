"""A backend bound once per model (fastcnn.kernels.ops): one object for the layers and the
optimizer, no per-call validation in the training loop, the same meaning on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn import kernels as K
from fastcnn.kernels.ops import Ops
from fastcnn.kernels.shapes import conv_geometry, pool_geometry
from fastcnn.optim import SGD, Adam

HCONFIGS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2, "padding": 1}],
            ["conv", {"ksize": 2, "chn": 3, "stride": 2}], ["avg", {"stride": 1, "ksize": 2}], 8]
VALIDATING = ("conv2d_forward", "conv2d_backward", "max_pool_forward", "max_pool_backward",
              "avg_pool_forward", "avg_pool_backward", "ext_regions", "undo_ext_regions")


def test_every_backend_declares_its_capabilities_and_defines_every_function(any_backend):
    backend = K.get_backend(any_backend)
    for capability in K.CAPABILITIES:
        assert isinstance(getattr(backend, capability), bool)
    for name in K.BACKEND_FUNCTIONS:
        assert callable(getattr(backend, name))
    ops = Ops.bind(any_backend)
    assert ops.writes_into_out == K.WRITES_INTO_OUT[any_backend]
    assert ops.single_threaded_blas == K.SINGLE_THREADED_BLAS[any_backend]


def test_no_backend_module_fills_its_names_by_globals_update():
    from pathlib import Path

    folder = Path(K.__file__).parent
    assert [p.name for p in folder.glob("*.py") if "globals().update" in p.read_text()] == []


def test_a_backend_without_a_capability_is_refused(monkeypatch):
    import types

    fake = types.ModuleType("fake_backend")
    for name in K.BACKEND_FUNCTIONS:
        setattr(fake, name, lambda *a, **k: None)
    fake.WRITES_INTO_OUT = False  # SINGLE_THREADED_BLAS missing
    monkeypatch.setitem(K.BACKENDS, "fake", "fake_backend")
    monkeypatch.setitem(__import__("sys").modules, "fake_backend", fake)
    with pytest.raises(ImportError, match="backend 'fake' .* lacks SINGLE_THREADED_BLAS"):
        K.get_backend("fake")


def test_the_model_binds_its_backend_once_for_every_layer_and_the_optimizer(fast_backend):
    adam = Adam()
    model = CnnModel("ops", tiny_dataset(n=40), None, HCONFIGS, backend=fast_backend, seed=0, optimizer=adam)
    assert isinstance(model.ops, Ops) and model.ops.name == fast_backend
    assert all(layer.ops is model.ops for layer in model.layers)
    assert adam.ops is model.ops  # the user's own Adam runs the backend's update...
    assert adam.lr == 0.001 and adam.beta1 == 0.9  # ...and nothing else of it changed
    assert [step.layers for step in model.steps] == [(layer,) for layer in model.layers]


def test_training_calls_no_validating_function(fast_backend, monkeypatch):
    """The layers resolved their geometry when built: a step goes straight to the backend."""
    model = CnnModel("ops", tiny_dataset(n=40), None, HCONFIGS, backend=fast_backend, seed=0)
    reference = CnnModel("ops", tiny_dataset(n=40), None, HCONFIGS, backend=fast_backend, seed=0)

    def refuse(*args, **kwargs):
        raise AssertionError("the training loop called a validating kernel function")

    for name in VALIDATING:
        monkeypatch.setattr(K, name, refuse)
    model.train(2, 8, 0.01, progress=False)
    monkeypatch.undo()
    reference.train(2, 8, 0.01, progress=False)
    for key in model.params:
        np.testing.assert_array_equal(model.params[key], reference.params[key])


def test_bound_functions_equal_the_validated_ones(backend, rng):
    """Ops and the public functions run the same backend code: the same bits."""
    ops = Ops.bind(backend)
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    k = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    geo = conv_geometry(x.shape, 3, 2, 1, "same")
    y = ops.conv2d_forward(x, k, b, geo)
    assert y.tobytes() == K.conv2d_forward(x, k, b, 1, "same", backend=backend).tobytes()
    g_y = rng.standard_normal(y.shape).astype(np.float32)
    got = ops.conv2d_backward(g_y, x, k, geo, True)
    want = K.conv2d_backward(g_y, x, k, 1, "same", backend=backend)
    for a, w in zip(got, want, strict=True):
        assert a.tobytes() == w.tobytes()
    pgeo = pool_geometry(x.shape, (2, 2), (2, 2))
    assert ops.max_pool_forward(x, pgeo).tobytes() == K.max_pool_forward(x, 2, backend=backend).tobytes()


def test_out_means_the_same_on_every_backend(backend, rng):
    """Given ``out``, every backend fills it and returns it (the NumPy ones by a copy)."""
    ops = Ops.bind(backend)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float64)
    geo = pool_geometry(x.shape, (2, 2), (2, 2))
    out = np.full((2, 3, 3, 2), 7.0)
    assert ops.avg_pool_forward(x, geo, out=out) is out
    np.testing.assert_allclose(out, x.reshape(2, 3, 2, 3, 2, 2).mean(axis=(2, 4)), rtol=1e-12)
    k = rng.standard_normal((3, 3, 2, 2))
    cgeo = conv_geometry(x.shape, 3, 3, 1, "same")
    g_x_out = np.full_like(x, 7.0)
    g_x, _, _ = ops.conv2d_backward(np.ones((2, 6, 6, 2)), x, k, cgeo, True, out=g_x_out)
    assert g_x is g_x_out
    g_x, _, _ = ops.conv2d_backward(np.ones((2, 6, 6, 2)), x, k, cgeo, False)
    assert g_x is None


def test_relu_without_out_never_changes_its_input(any_backend, rng):
    impl = K.get_backend(any_backend)
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    before = x.copy()
    y = impl.relu_forward(x)
    assert y is not x and x.tobytes() == before.tobytes()
    assert impl.relu_forward(x, out=x) is x  # in place only when asked
    np.testing.assert_array_equal(x, np.maximum(before, 0))


def test_an_unbound_optimizer_runs_numpys_update():
    params = {"w": np.ones(5, np.float32)}
    grads = {"w": np.full(5, 0.5, np.float32)}
    SGD(0.1).update(params, grads)
    np.testing.assert_allclose(params["w"], 0.95)
    adam = Adam(0.1)
    adam.update(params, grads)  # NumPy's elementwise step
    assert np.all(params["w"] < 0.95)
