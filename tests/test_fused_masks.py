"""Dropout and noise inside the fused conv + pooling step (``steps.ConvPoolStep(after=...)``).

The fused kernels apply a dropout's or noise layer's numbers as they write the pooled output
(counter = the element's flat index in [mb, pyh, pyw, ychn]) and dropout's backward where they
read the pooled gradient. They must give the bits of the layers one by one (conv, ReLU,
pooling, then ``masks``' dropout / noise; and back) on both numba backends, any thread count
and any cut of the batch (numba-aot), with odd element counts per image (so noise's
Box-Muller pairs straddle images); models must draw the same keys at the same point and
train to the same bits fused or not, and agree with the NumPy backend.

The same for a dropout or noise layer right after a full or conv layer with ReLU
(``steps.ReluMaskStep``): ReLU and the draw in one elementwise pass, and back.
"""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import assert_sampled_grads, tiny_dataset

from fastcnn import CnnModel, phase, runtime
from fastcnn import kernels as K
from fastcnn.kernels import aot, masks
from fastcnn.kernels.masks import Draw
from fastcnn.kernels.shapes import conv_geometry, pool_geometry
from fastcnn.layers.regularization import Dropout, Noise
from fastcnn.steps import ConvPoolStep, LayerStep, ReluMaskStep, plan_steps
from fastcnn.zoo import get_preset

AOT = K.backend_available("numba-aot")
needs_aot = pytest.mark.skipif(not AOT, reason="numba-aot not built (make aot)")
KEY = 0x2545F4914F6CDD1D

#: id -> (x shape, k, ychn, padding, pool, window, stride); every pooled image has an odd
#: element count; one and several input channels (the two fused backwards), max and avg
CASES = {
    "c1-max3s2": ((5, 12, 11, 1), 5, 7, "valid", "max", 3, 2),  # 3x3x7 = 63 per image
    "c3-avg3": ((3, 9, 11, 3), 3, 5, "same", "avg", 3, 3),  # 3x3x5 = 45
    "c4-max2": ((3, 10, 6, 4), 3, 5, 1, "max", 2, 2),  # 5x3x5 = 75
}
DRAWS = {"dropout": lambda: Draw.dropout(KEY, 0.6), "noise": lambda: Draw.noise(KEY, 0.25, 0.5)}
DTYPES = {"f32": np.float32, "f64": np.float64}


def _bits(a) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _case(name: str, dtype, seed: int = 0):
    x_shape, ks, ychn, padding, kind, window, stride = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = (rng.standard_normal((ks, ks, x_shape[3], ychn)) * 0.4).astype(dtype)
    b = (rng.standard_normal(ychn) * 0.3).astype(dtype)
    geo = conv_geometry(x_shape, ks, ks, 1, padding)
    pgeo = pool_geometry((1, geo.yh, geo.yw, ychn), window, stride)
    g = rng.standard_normal((x_shape[0], pgeo.yh, pgeo.yw, ychn)).astype(dtype)
    return x, k, b, g, geo, pgeo, kind


def _layers(host, mask_ops, x, k, b, g, geo, pgeo, kind, draw):
    """(y, mask, g_x, g_k, g_b) of conv, ReLU, pooling, dropout / noise one by one (the layers' calls)."""
    a = host.relu_forward(host.conv2d_forward(x, k, b, geo))
    fwd, bwd = ((host.max_pool_forward, host.max_pool_backward) if kind == "max"
                else (host.avg_pool_forward, host.avg_pool_backward))
    pooled = fwd(a, pgeo)
    mask = None
    if draw.mode == masks.DROPOUT:
        y, mask = mask_ops.dropout_forward(pooled, draw.key, draw.p1)
        g_pooled = mask_ops.dropout_backward(g, mask, draw.p1)
    else:
        y, g_pooled = mask_ops.add_noise(pooled, draw.key, draw.p1, draw.p2), g
    g_conv = host.relu_backward(bwd(g_pooled, a, pgeo), a)
    return (y, mask, *host.conv2d_backward(g_conv, x, k, geo))


def _fused(host, x, k, b, g, geo, pgeo, kind, draw):
    mask = np.empty(g.shape, np.uint8) if draw.mode == masks.DROPOUT else None
    y, code = host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo, draw=draw, mask=mask)
    keep = draw.p1 if mask is not None else 1.0
    return (y, mask, *host.conv_pool_backward(g, code, x, k, geo, "relu", kind, pgeo, mask=mask, keep=keep))


def _hosts() -> dict:
    hosts = {"numba": K.get_backend("numba")}
    if AOT:
        hosts["numba-aot"] = K.get_backend("numba-aot")
    return hosts


# --------------------------------------------------------------------------
# the kernels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("what", list(DRAWS))
@pytest.mark.parametrize("case", list(CASES))
def test_fused_draws_give_the_layers_bits(case, what, dtype, monkeypatch):
    """Fused == layer by layer, bit for bit, on numba and numba-aot (cut into pieces even for
    these small calls, so the pieces' counters must start at their first image), on 1 and 2
    threads; the mask equals masks.dropout_forward's."""
    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)
    x, k, b, g, geo, pgeo, kind = _case(case, dtype)
    assert np.prod(g.shape[1:]) % 2 == 1  # Box-Muller pairs straddle images
    draw = DRAWS[what]()
    results = []
    try:
        for threads in (1, 2):
            runtime.set_num_threads(threads)
            for name, host in _hosts().items():
                want = _layers(host, masks.bind_masks(name), x, k, b, g, geo, pgeo, kind, draw)
                got = _fused(host, x, k, b, g, geo, pgeo, kind, draw)
                for label, w, f in zip(("y", "mask", "g_x", "g_k", "g_b"), want, got, strict=True):
                    assert (w is None) == (f is None), label
                    assert w is None or _bits(f) == _bits(w), f"{name}, {threads} threads: {label}"
                results.append(got)
    finally:
        runtime.set_num_threads(None)
    for other in results[1:]:  # every host and thread count: the same bits
        assert all(a is None or _bits(a) == _bits(c) for a, c in zip(results[0], other, strict=True))
    y, mask = results[0][:2]
    if mask is not None:
        assert 0.4 < mask.mean() < 0.8 and np.all(y[mask == 0] == 0)


@pytest.mark.parametrize("what", list(DRAWS))
def test_fused_draws_match_the_numpy_reference(what):
    """The same numbers as the NumPy backend's masks on the fused pooled output: dropout's mask
    bit for bit, noise to the last bits of libm's log / cos / sin."""
    x, k, b, g, geo, pgeo, kind = _case("c3-avg3", np.float64, seed=1)
    draw = DRAWS[what]()
    host = K.get_backend("numba")
    plain, _ = host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo)
    y, mask = _fused(host, x, k, b, g, geo, pgeo, kind, draw)[:2]
    if draw.mode == masks.DROPOUT:
        want_y, want_mask = masks.dropout_forward(plain, draw.key, draw.p1)
        assert _bits(mask) == _bits(want_mask) and _bits(y) == _bits(want_y)
    else:
        want = masks.add_noise(plain, draw.key, draw.p1, draw.p2)
        np.testing.assert_allclose(y, want, rtol=1e-13, atol=1e-15)
        assert not np.array_equal(y, plain)


@pytest.mark.parametrize("what", list(DRAWS))
def test_fused_step_with_a_fixed_draw_matches_finite_differences(what):
    """float64: d(sum(g * y))/d(x, k, b) of the fused forward with a fixed key, by central differences,
    against the fused backward (dropout's mask and scale applied, noise's identity)."""
    x, k, b, g, geo, pgeo, kind = _case("c4-max2", np.float64, seed=2)
    host = K.get_backend("numba")
    draw = DRAWS[what]()
    _, _, g_x, g_k, g_b = _fused(host, x, k, b, g, geo, pgeo, kind, draw)

    def loss(xx, kk, bb):
        mask = np.empty(g.shape, np.uint8)
        return float(np.sum(g * host.conv_pool_forward(xx, kk, bb, geo, "relu", kind, pgeo, draw=draw,
                                                       mask=mask)[0]))

    assert_sampled_grads(loss, [x, k, b], [g_x, g_k, g_b], np.random.default_rng(3), 8)


def test_a_fused_dropout_needs_its_mask_array():
    x, k, b, g, geo, pgeo, kind = _case("c3-avg3", np.float32)
    host = K.get_backend("numba")
    with pytest.raises(ValueError, match=r"mask: a C-contiguous uint8 array of shape \(3, 3, 3, 5\)"):
        host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo, draw=Draw.dropout(KEY, 0.5))
    with pytest.raises(ValueError, match="got float32"):
        host.conv_pool_forward(x, k, b, geo, "relu", kind, pgeo, draw=Draw.dropout(KEY, 0.5),
                               mask=np.empty(g.shape, np.float32))


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------

DROP, NOISE = ["dropout", {"keep_prob": 0.6}], ["noise", {"std": 0.3, "mean": 0.1}]
#: the ch8 stacks on a small odd input (cnn2: dropout after each pool; cnn3: noise before each conv)
CNN2 = [["conv", {"ksize": 3, "chn": 5}], ["max", {"stride": 2}], DROP,
        ["conv", {"ksize": 3, "chn": 3}], ["avg", {"stride": 3}], DROP, 6]
CNN3 = [NOISE, ["conv", {"ksize": 3, "chn": 5}], ["max", {"stride": 2}], NOISE,
        ["conv", {"ksize": 3, "chn": 3}], ["avg", {"stride": 3}], 6]
#: dropout / noise after layers whose forward ends in ReLU: a stride-1 conv with no pooling (the
#: per-image kernels), a strided conv (im2col + sgemm) and two full layers of odd widths
DENSE = [["conv", {"ksize": 3, "chn": 3}], NOISE, ["conv", {"ksize": 3, "chn": 5, "stride": 2}], DROP,
         ["full", {"width": 37}], DROP, ["full", {"width": 11}], NOISE, 6]
SHAPE = (14, 18, 2)  # pooled images 7x9x5 (315) and 2x3x3 (18)
#: net -> how many dropout masks a training forward keeps
DROPOUTS = {"cnn2": 2, "cnn3": 0, "dense": 2}


def _model(hconfigs, backend="numba", seed=4, dtype="float32", **kwargs):
    ds = tiny_dataset(n=24, shape=SHAPE, classes=3, seed=1)
    return CnnModel("masks", ds, None, hconfigs, backend=backend, seed=seed, dtype=dtype, **kwargs)


def _kinds_of(steps) -> list:
    return [[la.spec.type for la in s.layers] for s in steps]


def _kinds(model) -> list:
    return _kinds_of(model.steps)


def test_plan_steps_takes_in_a_dropout_or_noise_right_after_a_fused_pair_with_no_pool_activation():
    assert _kinds(_model(CNN2)) == [["conv", "max", "dropout"], ["conv", "avg", "dropout"], ["full"],
                                    ["full"]]
    assert _kinds(_model(CNN3)) == [["noise"], ["conv", "max", "noise"], ["conv", "avg"], ["full"], ["full"]]
    pool_relu = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2, "actfunc": "relu"}], DROP, 5]
    assert _kinds(_model(pool_relu))[:2] == [["conv", "max"], ["dropout"]]  # the draws would precede it
    apart = [["conv", {"ksize": 3, "chn": 4}], DROP, ["max", {"stride": 2}], NOISE, NOISE, 5]
    # the conv's ReLU takes the dropout instead (ReluMaskStep); the second noise stays apart
    assert _kinds(_model(apart))[:4] == [["conv", "dropout"], ["max"], ["noise"], ["noise"]]
    twice = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], NOISE, DROP, 5]
    assert _kinds(_model(twice))[:2] == [["conv", "max", "noise"], ["dropout"]]
    strided = [["conv", {"ksize": 3, "chn": 4, "stride": 2}], ["max", {"stride": 2}], DROP, 5]
    assert _kinds(_model(strided))[:3] == [["conv"], ["max"], ["dropout"]]  # the pair does not fuse
    model = _model(CNN2)
    assert _kinds_of(plan_steps(model.layers, model.ops, masks=False))[:2] == [["conv", "max"], ["dropout"]]
    for other in (_model(CNN2, fuse=False), _model(CNN2, backend="numpy")):
        assert all(isinstance(s, LayerStep) for s in other.steps)
    assert [la for s in model.steps for la in s.layers] == model.layers


def _masks(model, auxes) -> list:
    """Every dropout mask of a training forward's auxes (fused steps keep it last)."""
    out = []
    for step, aux in zip(model.steps, auxes, strict=True):
        if isinstance(step, ConvPoolStep) and isinstance(step.layers[-1], Dropout):
            out.append(aux[3])
        elif isinstance(step, ReluMaskStep) and isinstance(step.layers[-1], Dropout):
            out.append(aux[2])
        elif isinstance(step, LayerStep) and isinstance(step.layers[0], Dropout):
            out.append(aux)
    return out


NETS = {"cnn2": CNN2, "cnn3": CNN3, "dense": DENSE}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("net", list(NETS))
def test_fused_unfused_and_numpy_draw_the_same_numbers_and_train_alike(net, dtype):
    """One training forward: the same output bits fused or not, the same dropout masks on all
    three, the generator left in the same state; then a few training steps: fused == unfused
    bit for bit, NumPy close (float tolerance: its convolution sums in another order)."""
    expected_masks, net = DROPOUTS[net], NETS[net]
    models = {"fused": _model(net, dtype=dtype), "layers": _model(net, dtype=dtype, fuse=False),
              "numpy": _model(net, dtype=dtype, backend="numpy")}
    assert any(len(s.layers) == 3 or isinstance(s, ReluMaskStep) for s in models["fused"].steps)
    x, _ = models["fused"].dataset.get_train_data(np.arange(5))
    outs, mask_sets, states = {}, {}, {}
    for name, model in models.items():
        with phase.training():
            outs[name], auxes = model._forward(x, None, None)
        mask_sets[name] = _masks(model, auxes)
        states[name] = model.rng.bit_generator.state
    assert _bits(outs["fused"]) == _bits(outs["layers"])
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(outs["numpy"], outs["layers"], rtol=tol, atol=tol)
    assert states["fused"] == states["layers"] == states["numpy"]
    assert len(mask_sets["fused"]) == expected_masks
    for name in ("layers", "numpy"):
        assert [_bits(m) for m in mask_sets[name]] == [_bits(m) for m in mask_sets["fused"]], name
    params = {}
    for name, model in models.items():
        model.train(2, 8, 0.01, progress=False)
        params[name] = model.params
    for key in params["fused"]:
        assert _bits(params["fused"][key]) == _bits(params["layers"][key]), key
    assert models["fused"].rng.bit_generator.state == models["layers"].rng.bit_generator.state


def test_numpy_parameters_follow_the_fused_ones_under_sgd():
    """Plain SGD (Adam would magnify last-bit differences of near-zero gradients): after a few
    steps the NumPy backend's float64 parameters equal the fused numba ones to float tolerance."""
    params = {}
    for backend in ("numba", "numpy"):
        model = _model(CNN2, backend=backend, dtype="float64", optimizer="sgd")
        model.train(2, 8, 0.05, progress=False)
        params[backend] = model.params
    for key in params["numba"]:
        np.testing.assert_allclose(params["numba"][key], params["numpy"][key], rtol=1e-9, atol=1e-12,
                                   err_msg=key)


@pytest.mark.parametrize("backend", ["numba", pytest.param("numba-aot", marks=needs_aot)])
def test_fused_masks_give_the_same_step_on_one_and_two_threads(backend, monkeypatch):
    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)  # numba-aot: cut even these small calls
    results = []
    try:
        for threads in (1, 2):
            runtime.set_num_threads(threads)
            for net in (CNN2, CNN3, DENSE):
                model = _model(net, backend)
                x, y = model.dataset.get_train_data(np.arange(7))  # an odd batch: uneven pieces
                loss, _, grads = model.compute_step(x, y)
                results.append((threads, loss, grads))
    finally:
        runtime.set_num_threads(None)
    half = len(results) // 2
    for (_, loss1, grads1), (_, loss2, grads2) in zip(results[:half], results[half:], strict=True):
        assert loss1 == loss2
        for key in grads1:
            assert _bits(grads1[key]) == _bits(grads2[key]), key


@needs_aot
@pytest.mark.parametrize("net", ["cnn2", "dense"])
def test_numba_aot_trains_fused_masks_to_the_jit_bits(net):
    params = {}
    for backend in ("numba", "numba-aot"):
        model = _model(NETS[net], backend)
        assert any(len(s.layers) > 1 for s in model.steps)
        model.train(2, 8, 0.01, progress=False)
        params[backend] = model.params
    for key in params["numba"]:
        assert _bits(params["numba"][key]) == _bits(params["numba-aot"][key]), key


def test_inference_runs_the_fused_step_without_masks_or_draws():
    model = _model(CNN2)
    x, _ = model.dataset.get_train_data(np.arange(4))
    state = model.rng.bit_generator.state
    out, auxes = model.forward(x)  # inference: no masks, nothing drawn
    assert model.rng.bit_generator.state == state
    step = model.steps[0]
    conv, pool, drop = step.layers
    assert isinstance(drop, Dropout)
    y, (_, _, _, mask) = step.forward(x)
    assert mask is None
    plain, _ = model.ops.conv_pool_forward(x, conv.params["k"], conv.params["b"], conv.geo, "relu", "max",
                                           pool.geo)
    assert _bits(y) == _bits(plain)
    assert _bits(out) == _bits(_model(CNN2, fuse=False).forward(x)[0])
    with phase.training():
        y_train, (_, _, _, mask) = step.forward(x)
    assert mask is not None and _bits(y_train) != _bits(plain)
    assert isinstance(_model(CNN3).steps[1].layers[-1], Noise)


# --------------------------------------------------------------------------
# ReLU and the dropout / noise after it (steps.ReluMaskStep)
# --------------------------------------------------------------------------

#: flat element counts: odd, and more than one parallel block (numba_random._BLOCK) with an odd tail
RELU_SHAPES = {"7x53": (7, 53), "3x3001": (3, 3001)}


def _relu_layers(host, mask_ops, a, g, draw):
    """(y, mask, g_a) of ReLU then dropout / noise one by one, and back (the layers' calls)."""
    r = host.relu_forward(a)
    if draw.mode == masks.DROPOUT:
        y, mask = mask_ops.dropout_forward(r, draw.key, draw.p1)
        return y, mask, host.relu_backward(mask_ops.dropout_backward(g, mask, draw.p1), r)
    return mask_ops.add_noise(r, draw.key, draw.p1, draw.p2), None, host.relu_backward(g, r)


def _relu_fused(host, mask_ops, a, g, draw):
    y, mask = mask_ops.relu_draw_forward(a, draw)
    if mask is None:
        return y, None, host.relu_backward(g, a)  # noise (as ReluMaskStep): ReLU's backward on a
    return y, mask, mask_ops.relu_drop_backward(g, mask, draw.p1, a)


def _relu_case(shape, dtype):
    rng = np.random.default_rng(5)
    a = rng.standard_normal(shape).astype(dtype)
    a.reshape(-1)[:4] = [-0.0, 0.0, np.nan, -np.inf]  # the edges of ReLU and its gradient
    return a, rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("what", list(DRAWS))
@pytest.mark.parametrize("shape", list(RELU_SHAPES))
def test_relu_mask_kernels_give_the_layers_bits(shape, what, dtype, monkeypatch):
    """ReLU + dropout / noise fused == relu_forward, then the mask function (and back), bit for bit,
    on numba and numba-aot (cut into pieces: each counts from its first element), on 1 and 2
    threads; and == the NumPy backend's ReLU and masks (dropout: every bit; noise: libm)."""
    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)
    a, g = _relu_case(RELU_SHAPES[shape], dtype)
    draw = DRAWS[what]()
    results = []
    try:
        for threads in (1, 2):
            runtime.set_num_threads(threads)
            for name, host in _hosts().items():
                mask_ops = masks.bind_masks(name)
                want = _relu_layers(host, mask_ops, a, g, draw)
                got = _relu_fused(host, mask_ops, a, g, draw)
                for label, w, f in zip(("y", "mask", "g_a"), want, got, strict=True):
                    assert (w is None) == (f is None), label
                    assert w is None or _bits(f) == _bits(w), f"{name}, {threads} threads: {label}"
                results.append(got)
    finally:
        runtime.set_num_threads(None)
    for other in results[1:]:
        assert all(x is None or _bits(x) == _bits(z) for x, z in zip(results[0], other, strict=True))
    y, mask, g_a = results[0]
    numpy = _relu_layers(K.get_backend("numpy"), masks.bind_masks("numpy"), a, g, draw)
    # g_a: equal values; NumPy's g * (y > 0) gives -0.0 where numba's ReLU backward gives 0.0
    np.testing.assert_array_equal(g_a, numpy[2])
    if mask is not None:
        assert _bits(y) == _bits(numpy[0]) and _bits(mask) == _bits(numpy[1])
        assert 0.5 < mask.mean() < 0.7 and np.all(y[mask == 0] == 0)
    else:
        rtol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(y, numpy[0], rtol=rtol, atol=rtol)
    assert np.isnan(y.reshape(-1)[2]) or (mask is not None and mask.reshape(-1)[2] == 0)


def test_relu_mask_kernels_check_their_arrays():
    a, g = _relu_case((4, 9), np.float32)
    ops = masks.bind_masks("numba")
    draw = DRAWS["dropout"]()
    with pytest.raises(ValueError, match="must not overlap"):
        ops.relu_draw_forward(a, draw, out=a)
    with pytest.raises(ValueError, match=r"mask must be a C-contiguous writeable uint8 array of shape"):
        ops.relu_draw_forward(a, draw, mask=np.empty((4, 8), np.uint8))
    with pytest.raises(ValueError, match="a dropout or noise draw"):
        ops.relu_draw_forward(a, masks.NO_DRAW)
    _, mask = ops.relu_draw_forward(a, draw)
    with pytest.raises(ValueError, match="out must be a C-contiguous writeable float32"):
        ops.relu_drop_backward(g, mask, 0.6, a, out=np.empty((4, 9), np.float64))
    assert masks.bind_masks("numpy").relu_draw_forward is None  # the NumPy backends: layer by layer


def test_plan_steps_joins_a_dropout_or_noise_to_the_relu_layer_before_it():
    model = _model(DENSE)
    assert _kinds(model) == [["conv", "noise"], ["conv", "dropout"], ["full", "dropout"], ["full", "noise"],
                             ["full"], ["full"]]
    assert all(isinstance(s, ReluMaskStep) for s in model.steps[:4])
    split = plan_steps(model.layers, model.ops, masks=False)
    assert _kinds_of(split) == [[layer.spec.type] for layer in model.layers]
    for other in (_model(DENSE, fuse=False), _model(DENSE, backend="numpy")):
        assert all(isinstance(s, LayerStep) for s in other.steps)
    apart = [["conv", {"ksize": 3, "chn": 4, "actions": "LAB"}], DROP,  # an ActionChain
             ["full", {"width": 7, "actfunc": "sigmoid"}], DROP,
             ["full", {"width": 5, "actfunc": "none"}], NOISE, 5]
    assert all(isinstance(s, LayerStep) for s in _model(apart).steps)


def test_the_deepconvnet_plan_fuses_its_full_relu_and_dropout():
    ds = tiny_dataset(n=8, shape=(28, 28, 1), classes=10, seed=2)
    model = CnnModel("dcn", ds, None, get_preset("deepconvnet"), backend="numba", seed=1)
    relu_steps = [s for s in model.steps if isinstance(s, ReluMaskStep)]
    assert [[la.spec.type for la in s.layers] for s in relu_steps] == [["full", "dropout"]]
    assert relu_steps[0].layers[0].output_shape == (50,)
    # the output layer (affine 10, no activation) keeps its dropout apart
    assert _kinds(model)[-3:] == [["full", "dropout"], ["full"], ["dropout"]]


@pytest.mark.parametrize("backend", ["numba", pytest.param("numba-aot", marks=needs_aot)])
def test_deepconvnet_trains_to_the_same_bits_fused_and_layer_by_layer(backend):
    """A few Adam steps of the deepconvnet preset on tiny random data: fused (conv + pool pairs, full +
    ReLU + dropout) == layer by layer == the numba JIT's fused run, every parameter bit for bit."""
    runs = {"fused": (backend, True), "layers": (backend, False), "jit": ("numba", True)}
    params = {}
    for name, (on, fuse) in runs.items():
        ds = tiny_dataset(n=12, shape=(28, 28, 1), classes=10, seed=3)  # its own: shuffles advance its state
        model = CnnModel("dcn", ds, None, get_preset("deepconvnet"), backend=on, seed=1, fuse=fuse)
        assert any(isinstance(s, ReluMaskStep) for s in model.steps) == fuse
        model.train(2, 5, 0.001, progress=False)
        params[name] = model.params
    for key in params["fused"]:
        assert _bits(params["fused"][key]) == _bits(params["layers"][key]), key
        assert _bits(params["fused"][key]) == _bits(params["jit"][key]), key


def test_inference_runs_the_relu_mask_step_without_masks_or_draws():
    model = _model(DENSE)
    x, _ = model.dataset.get_train_data(np.arange(4))
    state = model.rng.bit_generator.state
    out, _ = model.forward(x)
    assert model.rng.bit_generator.state == state
    assert _bits(out) == _bits(_model(DENSE, fuse=False).forward(x)[0])
    step = model.steps[0]
    y, (_, a, mask) = step.forward(x)
    assert a is None and mask is None
    assert _bits(y) == _bits(step.layers[0].forward(x)[0])
