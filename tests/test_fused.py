"""Fused conv + activation + pooling (``NumbaHost.conv_pool_*``, ``steps.ConvPoolStep``).

The fused kernels must give the unfused chain's bits (conv, ReLU, pooling; then
pooling's, ReLU's and the conv's backward) on every case they serve, on both
numba backends and both register-block variants; both agree with the float64
references of tests/naive.py, whose chain rule is checked by finite differences
here. Models pick fused steps exactly where a conv is followed by a pooling the
backend fuses, and train to the same bits as layer by layer, on any thread count.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from model_helpers import assert_sampled_grads, tiny_dataset

from fastcnn import CnnModel, runtime
from fastcnn import kernels as K
from fastcnn.kernels.shapes import conv_geometry, pool_geometry
from fastcnn.steps import ConvPoolStep, LayerStep, plan_steps
from fastcnn.zoo import get_preset

AOT = K.backend_available("numba-aot")
needs_aot = pytest.mark.skipif(not AOT, reason="numba-aot not built (make aot)")

#: id -> (x shape, (kh, kw), ychn, padding): one and several input channels (8+: the SIMD
#: transposes), odd sizes, odd / even / non-square kernels, same / valid / int padding, batch 1 and odd
CONVS = {
    "c1-k5-valid-n3": ((3, 12, 11, 1), (5, 5), 7, "valid"),
    "c1-k2-same-n1": ((1, 9, 10, 1), (2, 2), 4, "same"),
    "c3-k3-same-n3": ((3, 9, 11, 3), (3, 3), 6, "same"),
    "c4-k2x3-valid-n1": ((1, 10, 9, 4), (2, 3), 5, "valid"),
    "c9-k3-same-n5": ((5, 11, 10, 9), (3, 3), 12, "same"),
    "c2-k4-pad1-n3": ((3, 8, 9, 2), (4, 4), 3, 1),
    "c3-k3-pad3-n2": ((2, 7, 8, 3), (3, 3), 6, 3),  # padding beyond the kernel: g_x crops g_y rows
}
#: id -> (pool, window, stride): stride = window and stride < window (overlapping windows)
POOLS = {
    "max2": ("max", 2, 2), "max3": ("max", 3, 3), "max3s2": ("max", 3, 2), "max2s1": ("max", 2, 1),
    "avg2": ("avg", 2, 2), "avg3": ("avg", 3, 3), "avg3s2": ("avg", 3, 2), "avg2s1": ("avg", 2, 1),
}
DTYPES = {"f32": np.float32, "f64": np.float64}


def _hosts() -> dict:
    """The numba backend, its other register-block variant, and numba-aot when built."""
    from fastcnn.kernels import numba_kernels
    from fastcnn.kernels.numba_host import NumbaHost

    jit = K.get_backend("numba")
    hosts = {"numba": jit,
             "numba-other-variant": NumbaHost(numba_kernels, wide=not jit.wide, threads=jit.threads)}
    if AOT:
        hosts["numba-aot"] = K.get_backend("numba-aot")
    return hosts


def _case(conv: str, pool: str, dtype, seed: int = 0):
    """Arrays and geometry of one case: x, k, b, g (the pooled output's gradient), geo, pool geo."""
    x_shape, (kh, kw), ychn, padding = CONVS[conv]
    kind, window, stride = POOLS[pool]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = (rng.standard_normal((kh, kw, x_shape[3], ychn)) * 0.4).astype(dtype)
    b = (rng.standard_normal(ychn) * 0.3).astype(dtype)
    geo = conv_geometry(x_shape, kh, kw, 1, padding)
    pgeo = pool_geometry((1, geo.yh, geo.yw, ychn), window, stride)
    g = rng.standard_normal((x_shape[0], pgeo.yh, pgeo.yw, ychn)).astype(dtype)
    return x, k, b, g, geo, pgeo, kind


def _unfused(host, x, k, b, g, geo, pgeo, act, kind, input_grad=True):
    """(y, g_x, g_k, g_b) of the three layers one by one, as the layers call them."""
    conv = host.conv2d_forward(x, k, b, geo)
    a = host.relu_forward(conv) if act == "relu" else conv
    forward, backward = ((host.max_pool_forward, host.max_pool_backward) if kind == "max"
                         else (host.avg_pool_forward, host.avg_pool_backward))
    y = forward(a, pgeo)
    g_a = backward(g, a, pgeo)
    g_conv = host.relu_backward(g_a, a) if act == "relu" else g_a
    return (y, *host.conv2d_backward(g_conv, x, k, geo, input_grad))


def _fused(host, x, k, b, g, geo, pgeo, act, kind, input_grad=True):
    y, code = host.conv_pool_forward(x, k, b, geo, act, kind, pgeo)
    return (y, *host.conv_pool_backward(g, code, x, k, geo, act, kind, pgeo, input_grad))


def _bits(a) -> bytes:
    return None if a is None else np.ascontiguousarray(a).tobytes()


# --------------------------------------------------------------------------
# the kernels: fused == unfused, bit for bit; both == the float64 references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("act", ["relu", "none"])
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("conv", list(CONVS))
def test_fused_equals_the_layers_bit_for_bit(conv, pool, act, dtype):
    x, k, b, g, geo, pgeo, kind = _case(conv, pool, dtype)
    assert K.get_backend("numba").conv_pool_fusable(geo, act, kind, pgeo)
    results = {}
    for name, host in _hosts().items():
        want = _unfused(host, x, k, b, g, geo, pgeo, act, kind)
        got = _fused(host, x, k, b, g, geo, pgeo, act, kind)
        for what, w, f in zip(("y", "g_x", "g_k", "g_b"), want, got, strict=True):
            assert _bits(f) == _bits(w), f"{name}: {what}"
        # without the input gradient (a model's first layer): the same g_k and g_b
        skipped = _fused(host, x, k, b, g, geo, pgeo, act, kind, input_grad=False)
        assert skipped[1] is None
        assert _bits(skipped[2]) == _bits(want[2]) and _bits(skipped[3]) == _bits(want[3]), name
        results[name] = got
    if "numba-aot" in results:  # the same functions compiled ahead of time
        assert all(_bits(a) == _bits(c) for a, c in zip(results["numba"], results["numba-aot"], strict=True))
    # the register-block variants differ in g_k's blocks only: y and g_x (4 x 3 or 4 x 6 passes,
    # each channel's expression the same) and g_b are the same bits
    for i, what in ((0, "y"), (1, "g_x"), (3, "g_b")):
        assert _bits(results["numba"][i]) == _bits(results["numba-other-variant"][i]), what


def _reference(x, k, b, g, geo, pgeo, act, kind):
    """float64 (y, g_x, g_k, g_b) of the chain through tests/naive.py."""
    pads = geo.pads
    padding = (pads[0], pads[2]) if pads[0] == pads[1] and pads[2] == pads[3] else "same"
    conv = naive.conv2d_forward(x, k, b, 1, padding)
    a = np.maximum(conv, 0) if act == "relu" else conv
    window, stride = (pgeo.kh, pgeo.kw), (pgeo.sh, pgeo.sw)
    if kind == "max":
        y = naive.max_pool_forward(a, window, stride)
        g_a = naive.max_pool_backward(g, a, window, stride)
    else:
        y = naive.avg_pool_forward(a, window, stride)
        g_a = naive.avg_pool_backward(g, a, window, stride)
    g_conv = g_a * (a > 0) if act == "relu" else g_a
    return (y, *naive.conv2d_backward(g_conv, x, k, 1, padding))


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("act", ["relu", "none"])
@pytest.mark.parametrize("pool", ["max2", "max3s2", "avg3", "avg2s1"])
@pytest.mark.parametrize("conv", list(CONVS))
def test_fused_equals_the_float64_reference(conv, pool, act, dtype):
    x, k, b, g, geo, pgeo, kind = _case(conv, pool, dtype, seed=1)
    want = _reference(*(a.astype(np.float64) for a in (x, k, b, g)), geo, pgeo, act, kind)
    got = _fused(K.get_backend("numba"), x, k, b, g, geo, pgeo, act, kind)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    for what, w, f in zip(("y", "g_x", "g_k", "g_b"), want, got, strict=True):
        assert f.dtype == dtype
        np.testing.assert_allclose(f, w, rtol=tol, atol=tol, err_msg=what)


@pytest.mark.parametrize("act", ["relu", "none"])
@pytest.mark.parametrize("conv, pool", [("c1-k5-valid-n3", "max3s2"), ("c3-k3-same-n3", "avg2"),
                                        ("c4-k2x3-valid-n1", "max2s1"), ("c2-k4-pad1-n3", "avg3s2")])
def test_the_reference_chain_matches_finite_differences(conv, pool, act):
    """d(sum(g * y))/d(x, k, b) of the float64 reference, by central differences (keeps the
    oracle of the test above honest; kinks of ReLU / max are avoided by the random data)."""
    x, k, b, g, geo, pgeo, kind = _case(conv, pool, np.float64, seed=2)
    _, g_x, g_k, g_b = _reference(x, k, b, g, geo, pgeo, act, kind)
    rng = np.random.default_rng(3)

    def loss(xx, kk, bb):
        return float(np.sum(g * _reference(xx, kk, bb, g, geo, pgeo, act, kind)[0]))

    assert_sampled_grads(loss, [x, k, b], [g_x, g_k, g_b], rng, 6)


def test_fused_kernels_keep_the_first_maximum_and_nan_as_the_layers_do():
    """Ties (ReLU makes many zeros, and -0.0), NaN and inf give the layers' bits too."""
    x, k, b, g, geo, pgeo, kind = _case("c3-k3-same-n3", "max3s2", np.float32, seed=4)
    x[0, 2:5, 3:6] = 0.0  # whole windows of zeros: conv = bias
    b[:] = np.float32(-0.0)
    x[1, 4, 4, 0] = np.nan
    x[2, 1, 1, 1] = np.inf
    for act in ("relu", "none"):
        for kind_ in ("max", "avg"):
            want = _unfused(K.get_backend("numba"), x, k, b, g, geo, pgeo, act, kind_)
            got = _fused(K.get_backend("numba"), x, k, b, g, geo, pgeo, act, kind_)
            for what, w, f in zip(("y", "g_x", "g_k", "g_b"), want, got, strict=True):
                assert _bits(f) == _bits(w), (act, kind_, what)


def test_what_fuses_is_stated_by_the_host():
    host = K.get_backend("numba")
    geo = conv_geometry((1, 12, 12, 3), 3, 3, 1, "same")
    strided = conv_geometry((1, 12, 12, 3), 3, 3, 2, "same")
    pool2 = pool_geometry((1, 12, 12, 3), 2, None)
    pool12 = pool_geometry((1, 12, 12, 3), 12, None)  # 144 window elements: no room in a uint8 code
    assert host.conv_pool_fusable(geo, "relu", "max", pool2)
    assert host.conv_pool_fusable(geo, "none", "avg", pool12)
    assert not host.conv_pool_fusable(geo, "relu", "max", pool12)
    assert not host.conv_pool_fusable(strided, "relu", "max", pool2)
    assert not host.conv_pool_fusable(geo, "sigmoid", "avg", pool2)
    assert not host.conv_pool_fusable(geo, "tanh", "max", pool2)
    for name in K.BACKENDS:
        if K.backend_available(name):
            assert K.FUSES_CONV_POOL[name] == name.startswith("numba")


# --------------------------------------------------------------------------
# the model: which steps fuse, and the same training bits
# --------------------------------------------------------------------------

SIMPLE = (28, 28, 1), get_preset("simpleconvnet")
FLOWERS = (24, 24, 3), get_preset("flower")  # the seed's three-conv stack on a smaller input
MIXED = (16, 16, 2), [
    ["conv", {"ksize": 3, "chn": 4, "stride": 2}], ["max", {"stride": 2}],  # strided conv: no
    ["conv", {"ksize": 3, "chn": 4}], ["conv", {"ksize": 3, "chn": 5, "actfunc": "none"}],  # conv, conv: no
    ["avg", {"stride": 2}],  # the second conv and this: yes
    ["conv", {"ksize": 2, "chn": 3, "actfunc": "tanh"}], ["max", {"stride": 1, "ksize": 2}],  # tanh: no
    ["conv", {"ksize": 1, "chn": 3}], ["max", {"stride": 2, "padding": "same"}],  # padded pool: no
    ["max", {"stride": 1, "ksize": 1}], 6,  # pool after pool: no
]


def _model(net, backend="numba", fuse=True, seed=5, **kwargs):
    shape, hconfigs = net
    return CnnModel("fused", tiny_dataset(n=48, shape=shape, classes=4), None, hconfigs, backend=backend,
                    seed=seed, fuse=fuse, **kwargs)


def _step_kinds(model) -> list:
    return [("fused" if isinstance(s, ConvPoolStep) else "layer", [la.spec.type for la in s.layers])
            for s in model.steps]


def test_plan_steps_fuses_exactly_each_conv_followed_by_a_fusable_pooling():
    assert _step_kinds(_model(SIMPLE)) == [("fused", ["conv", "max"]), ("layer", ["full"]),
                                          ("layer", ["full"])]
    assert [kind for kind, _ in _step_kinds(_model(FLOWERS))] == ["fused", "fused", "fused", "layer"]
    mixed = _model(MIXED)
    assert _step_kinds(mixed) == [
        ("layer", ["conv"]), ("layer", ["max"]), ("layer", ["conv"]), ("fused", ["conv", "avg"]),
        ("layer", ["conv"]), ("layer", ["max"]), ("layer", ["conv"]), ("layer", ["max"]),
        ("layer", ["max"]), ("layer", ["full"]), ("layer", ["full"]),
    ]
    lenet = CnnModel("lenet", tiny_dataset(n=8, shape=(28, 28, 1), classes=3), None, get_preset("lenet"))
    assert not any(isinstance(s, ConvPoolStep) for s in lenet.steps)  # sigmoid convs stay unfused
    # every layer runs exactly once, in order
    assert [la for s in mixed.steps for la in s.layers] == mixed.layers
    # fuse=False, and the NumPy backends, run layer by layer
    for model in (_model(FLOWERS, fuse=False), _model(FLOWERS, backend="numpy")):
        assert all(isinstance(s, LayerStep) for s in model.steps)
    assert all(isinstance(s, LayerStep) for s in plan_steps(mixed.layers, mixed.ops, fuse=False))


@pytest.mark.parametrize("backend", ["numba", pytest.param("numba-aot", marks=needs_aot)])
@pytest.mark.parametrize("net", [SIMPLE, FLOWERS, MIXED], ids=["simpleconvnet", "flowers", "mixed"])
def test_training_fused_gives_the_layers_parameters_bit_for_bit(net, backend):
    params = {}
    for fuse in (True, False):
        model = _model(net, backend, fuse)
        history = model.train(2, 8, 0.003, progress=False)
        assert np.isfinite(history.costs[-1])
        params[fuse] = model.params
    fresh = _model(net, backend).params
    for key in params[True]:
        assert _bits(params[True][key]) == _bits(params[False][key]), key
    assert any(_bits(fresh[key]) != _bits(params[True][key]) for key in fresh)


@needs_aot
def test_numba_aot_trains_fused_to_the_jit_bits():
    params = {}
    for backend in ("numba", "numba-aot"):
        model = _model(FLOWERS, backend)
        model.train(2, 8, 0.003, progress=False)
        params[backend] = model.params
    for key in params["numba"]:
        assert _bits(params["numba"][key]) == _bits(params["numba-aot"][key]), key


@pytest.mark.parametrize("backend", ["numba", pytest.param("numba-aot", marks=needs_aot)])
def test_fused_steps_give_the_same_bits_on_one_and_two_threads(backend, monkeypatch):
    from fastcnn.kernels import aot

    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)  # numba-aot: cut even these small calls
    results = []
    try:
        for threads in (1, 2):
            runtime.set_num_threads(threads)
            assert backend != "numba" or runtime.numba_threads() == threads
            model = _model(FLOWERS, backend)
            x, y = model.dataset.get_train_data(np.arange(7))  # an odd batch: uneven pieces
            loss, _, grads = model.compute_step(x, y)
            results.append((loss, grads))
    finally:
        runtime.set_num_threads(None)
    (loss1, grads1), (loss2, grads2) = results
    assert loss1 == loss2
    for key in grads1:
        assert _bits(grads1[key]) == _bits(grads2[key]), key


def test_feature_maps_still_run_layer_by_layer_with_the_same_output():
    model = _model(FLOWERS)
    x, _ = model.dataset.get_train_data(np.arange(5))
    maps = []
    with_maps, _ = model.forward(x, maps)
    fused, auxes = model.forward(x)
    assert _bits(with_maps) == _bits(fused)
    assert len(auxes) == len(model.steps) < len(model.layers)
    conv = model.layers[0]
    assert [label for label, _ in maps][:2] == [conv.key, model.layers[1].key]
    assert maps[0][1].shape == (5, *conv.output_shape)  # the conv's own map is still drawn


@needs_aot
def test_numba_aot_checks_the_uint8_code_before_its_compiled_code_runs():
    """pycc's exports do not check arguments: a code array of another dtype or layout must be refused."""
    host = K.get_backend("numba-aot")
    x, k, b, g, geo, pgeo, kind = _case("c3-k3-same-n3", "max2", np.float32)
    shape = host.conv_pool_code_shape(x.shape[0], k.shape[3], geo, "relu", kind, pgeo)
    with pytest.raises(TypeError, match="argument 19 has dtype int64, expected uint8"):
        host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo, code=np.zeros(shape, np.int64))
    _, code = host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo)
    with pytest.raises(TypeError, match="argument 1 must be a C-contiguous 4-d array"):
        host.conv_pool_backward(g, np.asfortranarray(code), x, k, geo, "relu", kind, pgeo)
