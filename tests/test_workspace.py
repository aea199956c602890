"""Reused output buffers: the Workspace, the kernels' ``out=`` and the model's training step.

The model part checks the promise of ``CnnModel.compute_step``: after the first
step no more buffers are allocated, the same memory is written every step, the
results are bit-identical to a model that allocates, and nothing a caller holds
is ever a reused buffer.
"""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn import kernels as K
from fastcnn.workspace import Workspace

# --------------------------------------------------------------------------
# Workspace
# --------------------------------------------------------------------------


def test_same_key_returns_the_same_array():
    ws = Workspace()
    a = ws.get("conv", (2, 3, 4), np.float32)
    assert a.shape == (2, 3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    assert ws.get("conv", [2, 3, 4], "float32") is a  # shape as list, dtype as name: same key
    assert ws.allocations == 1
    assert ws.nbytes == 2 * 3 * 4 * 4


def test_new_shape_dtype_or_name_allocates():
    ws = Workspace()
    a = ws.get("conv", (2, 3), np.float32)
    b = ws.get("conv", (3, 3), np.float32)
    c = ws.get("conv", (2, 3), np.float64)  # evicts (2, 3) float32, the least recently used
    d = ws.get("pool", (2, 3), np.float64)
    assert len({id(a), id(b), id(c), id(d)}) == 4
    assert ws.allocations == 4
    assert not np.shares_memory(c, d)


def test_keeps_the_two_most_recently_used_shapes_per_name():
    ws = Workspace()
    big = ws.get("y", (8, 4), np.float32)
    small = ws.get("y", (5, 4), np.float32)
    for _ in range(3):  # a full batch and a smaller last batch, alternating: no thrashing
        assert ws.get("y", (8, 4), np.float32) is big
        assert ws.get("y", (5, 4), np.float32) is small
    assert ws.allocations == 2
    ws.get("y", (8, 4), np.float32)  # now (5, 4) is the least recently used
    third = ws.get("y", (3, 4), np.float32)
    assert ws.allocations == 3
    assert ws.get("y", (8, 4), np.float32) is big  # kept
    assert ws.get("y", (3, 4), np.float32) is third
    assert ws.get("y", (5, 4), np.float32) is not small  # dropped: allocated anew
    assert ws.allocations == 4
    assert len(ws.arrays()) == 2


def test_clear_drops_arrays_and_keeps_counting():
    ws = Workspace(shapes_per_name=1)
    a = ws.get("g", (4,), np.float64)
    assert ws.get("g", (5,), np.float64) is not a and ws.allocations == 2
    ws.clear()
    assert ws.arrays() == {} and ws.nbytes == 0
    ws.get("g", (5,), np.float64)
    assert ws.allocations == 3
    with pytest.raises(ValueError, match="shapes_per_name"):
        Workspace(shapes_per_name=0)


# --------------------------------------------------------------------------
# the kernels' out=
# --------------------------------------------------------------------------

#: id -> (x shape, kernel shape or None for pooling, stride, padding)
CONV_CASES = {
    "c1-valid": ((2, 7, 6, 1), (3, 3, 1, 4), 1, "valid"),  # one input channel: numba's own paths
    "c2-same": ((2, 5, 6, 2), (3, 3, 2, 4), 1, "same"),
    "c3-to-6": ((2, 5, 5, 3), (2, 3, 3, 6), 1, "same"),  # numba's 4-tap x 3-channel forward on AVX2
    "stride2": ((2, 7, 6, 2), (3, 2, 2, 3), 2, "same"),  # numba's im2col + sgemm path
}
POOL_CASES = {"2x2": ((2, 6, 6, 3), 2, None), "3x3-s2-overlap": ((2, 7, 8, 2), 3, 2)}
DTYPES = [np.float32, np.float64]


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _garbage(shape, dtype) -> np.ndarray:
    """An out array full of NaN: any element the kernel forgets to write shows."""
    return np.full(shape, np.nan, dtype)


def _conv_args(case, dtype, rng):
    xs, ks, stride, padding = CONV_CASES[case]
    x = rng.standard_normal(xs).astype(dtype)
    k = rng.standard_normal(ks).astype(dtype)
    b = rng.standard_normal(ks[3]).astype(dtype)
    y = K.conv2d_forward(x, k, b, stride, padding, backend="numpy")
    g_y = rng.standard_normal(y.shape).astype(dtype)
    return x, k, b, g_y, stride, padding


def _pool_args(case, dtype, rng):
    xs, ksize, stride = POOL_CASES[case]
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(dtype) * 0.1  # no max ties
    y = K.max_pool_forward(x, ksize, stride, backend="numpy")
    g_y = rng.standard_normal(y.shape).astype(dtype)
    return x, g_y, ksize, stride


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_out_is_bit_identical_and_returned(backend, case, dtype):
    x, k, b, g_y, stride, padding = _conv_args(case, dtype, np.random.default_rng(0))
    want = K.conv2d_forward(x, k, b, stride, padding, backend=backend)
    out = _garbage(want.shape, dtype)
    got = K.conv2d_forward(x, k, b, stride, padding, backend=backend, out=out)
    assert got is out
    assert _bits(out) == _bits(want)

    want_gx, want_gk, want_gb = K.conv2d_backward(g_y, x, k, stride, padding, backend=backend)
    out = _garbage(x.shape, dtype)
    g_x, g_k, g_b = K.conv2d_backward(g_y, x, k, stride, padding, backend=backend, out=out)
    assert g_x is out
    assert _bits(g_x) == _bits(want_gx) and _bits(g_k) == _bits(want_gk) and _bits(g_b) == _bits(want_gb)
    assert not np.shares_memory(g_k, out) and not np.shares_memory(g_b, out)


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_backward_without_input_grad_rejects_out(backend, case):
    x, k, _, g_y, stride, padding = _conv_args(case, np.float32, np.random.default_rng(1))
    g_x, g_k, g_b = K.conv2d_backward(g_y, x, k, stride, padding, input_grad=False, backend=backend)
    assert g_x is None
    _, want_gk, want_gb = K.conv2d_backward(g_y, x, k, stride, padding, backend=backend)
    assert _bits(g_k) == _bits(want_gk) and _bits(g_b) == _bits(want_gb)
    out = _garbage(x.shape, np.float32)
    with pytest.raises(ValueError, match=r"out receives g_x, which input_grad=False skips"):
        K.conv2d_backward(g_y, x, k, stride, padding, input_grad=False, backend=backend, out=out)
    assert np.isnan(out).all()  # untouched


POOLS = {
    "max": (K.max_pool_forward, K.max_pool_backward),
    "avg": (K.avg_pool_forward, K.avg_pool_backward),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(POOL_CASES))
@pytest.mark.parametrize("kind", list(POOLS))
def test_pool_out_is_bit_identical_and_returned(backend, kind, case, dtype):
    forward, backward = POOLS[kind]
    x, g_y, ksize, stride = _pool_args(case, dtype, np.random.default_rng(2))
    want = forward(x, ksize, stride, backend=backend)
    out = _garbage(want.shape, dtype)
    assert forward(x, ksize, stride, backend=backend, out=out) is out
    assert _bits(out) == _bits(want)
    want = backward(g_y, x, ksize, stride, backend=backend)
    out = _garbage(x.shape, dtype)
    assert backward(g_y, x, ksize, stride, backend=backend, out=out) is out
    assert _bits(out) == _bits(want)


def _six_calls(rng):
    """(name, call(out), out shape, {input name: array}) for each of the six functions, float64."""
    x, k, b, g_conv, stride, padding = _conv_args("c2-same", np.float64, rng)
    xp, g_pool, ksize, pstride = _pool_args("2x2", np.float64, rng)
    return [
        ("conv2d_forward", lambda out, be: K.conv2d_forward(x, k, b, stride, padding, backend=be, out=out),
         g_conv.shape, {"x": x, "k": k, "b": b}),
        ("conv2d_backward",
         lambda out, be: K.conv2d_backward(g_conv, x, k, stride, padding, backend=be, out=out),
         x.shape, {"g_y": g_conv, "x": x, "k": k}),
        ("max_pool_forward", lambda out, be: K.max_pool_forward(xp, ksize, pstride, backend=be, out=out),
         g_pool.shape, {"x": xp}),
        ("max_pool_backward",
         lambda out, be: K.max_pool_backward(g_pool, xp, ksize, pstride, backend=be, out=out),
         xp.shape, {"g_y": g_pool, "x": xp}),
        ("avg_pool_forward", lambda out, be: K.avg_pool_forward(xp, ksize, pstride, backend=be, out=out),
         g_pool.shape, {"x": xp}),
        ("avg_pool_backward",
         lambda out, be: K.avg_pool_backward(g_pool, xp, ksize, pstride, backend=be, out=out),
         xp.shape, {"g_y": g_pool, "x": xp}),
    ]


def _overlapping(array: np.ndarray, out_shape) -> np.ndarray:
    """``(out, copy)``: a C-contiguous ``out`` of ``out_shape`` and a copy of ``array``
    whose last element is ``out``'s first."""
    size = int(np.prod(out_shape))
    buf = np.empty(array.size + size - 1, array.dtype)
    buf[: array.size] = array.reshape(-1)
    return buf[array.size - 1 :].reshape(out_shape), buf[: array.size].reshape(array.shape)


@pytest.mark.parametrize("index", range(6), ids=[c[0] for c in _six_calls(np.random.default_rng(3))])
def test_bad_out_is_rejected_naming_out(backend, index):
    name, call, shape, inputs = _six_calls(np.random.default_rng(3))[index]
    shape_text = str(tuple(shape))
    wrong_shape = np.empty((shape[0] + 1, *shape[1:]))
    fortran = np.empty(shape[::-1]).transpose(3, 2, 1, 0)  # the right shape, not C-contiguous
    strided = np.empty((*shape[:3], 2 * shape[3]))[..., ::2]
    read_only = np.empty(shape)
    read_only.setflags(write=False)
    bad = [
        (np.empty(shape).tolist(), TypeError, "out must be a numpy array"),
        (wrong_shape, ValueError, r"out has shape"),
        (np.empty(shape, np.float32), TypeError, r"out has dtype float32, expected .* dtype float64"),
        (fortran, ValueError, "out must be C-contiguous"),
        (strided, ValueError, "out must be C-contiguous"),
        (read_only, ValueError, "out must be writeable"),
    ]
    for out, exc, match in bad:
        with pytest.raises(exc, match=match) as info:
            call(out, backend)
        if not isinstance(out, list):
            assert shape_text in str(info.value), (name, str(info.value))
    # an out sharing one element with each input in turn
    for input_name, array in inputs.items():
        out, view = _overlapping(array, shape)
        before = view.copy()
        args = {n: (view if n == input_name else a) for n, a in inputs.items()}
        with pytest.raises(ValueError, match=rf"out must not overlap the input {input_name}") as info:
            _call_with(name, args, out, backend)
        assert shape_text in str(info.value)
        np.testing.assert_array_equal(view, before)  # nothing ran


def _call_with(name, args, out, backend):
    """Call function ``name`` with the named inputs of ``_six_calls`` and ``out``."""
    fn = getattr(K, name)
    if name == "conv2d_forward":
        return fn(args["x"], args["k"], args["b"], 1, "same", backend=backend, out=out)
    if name == "conv2d_backward":
        return fn(args["g_y"], args["x"], args["k"], 1, "same", backend=backend, out=out)
    if name.endswith("forward"):
        return fn(args["x"], 2, None, backend=backend, out=out)
    return fn(args["g_y"], args["x"], 2, None, backend=backend, out=out)


def test_out_is_the_input_itself_is_rejected():
    x = np.random.default_rng(4).standard_normal((2, 4, 4, 3))
    g_y = np.ones((2, 2, 2, 3))
    with pytest.raises(ValueError, match="out must not overlap the input x"):
        K.avg_pool_backward(g_y, x, 2, backend="numba", out=x)


def test_writes_into_out_lists_every_backend():
    assert K.WRITES_INTO_OUT.keys() == K.BACKENDS.keys()
    writers = {name for name, writes in K.WRITES_INTO_OUT.items() if writes}
    assert writers == {"numba", "numba-aot"}  # the two that share numba_host's wrappers


# --------------------------------------------------------------------------
# the model: compute_step reuses its buffers, nothing else does
# --------------------------------------------------------------------------

NETS = {
    # two channels in: every conv has a g_x past the first
    "conv-max-conv-avg": ((10, 10, 2), [
        ["conv", {"ksize": 3, "chn": 4}],
        ["max", {"stride": 2, "actfunc": "relu"}],
        ["conv", {"ksize": 3, "chn": 6}],
        ["avg", {"stride": 2}],
        8,
    ]),
    # one channel in (numba's own conv paths), padded max pooling, a strided conv, tanh
    "c1-maxpad-stride2": ((9, 9, 1), [
        ["conv", {"ksize": 3, "chn": 5, "padding": "valid"}],
        ["max", {"ksize": 3, "stride": 2, "padding": "same"}],
        ["conv", {"ksize": 2, "chn": 4, "stride": 2, "actfunc": "tanh"}],
        ["conv", {"ksize": 1, "chn": 3}],
        6,
    ]),
    # fused steps (numba): one channel in with avg pooling after ReLU (the mask code), a
    # conv without activation and an overlapping max pool with its own ReLU
    "c1-avg-conv-max": ((9, 9, 1), [
        ["conv", {"ksize": 3, "chn": 5, "padding": "valid"}],
        ["avg", {"ksize": 3, "stride": 2}],
        ["conv", {"ksize": 2, "chn": 4, "actfunc": "none"}],
        ["max", {"ksize": 2, "stride": 1, "actfunc": "relu"}],
        6,
    ]),
}


def _models(net: str, backend: str = "numba", fuse: bool = True):
    """Two identical models of ``NETS[net]``: buffer reuse on (where the backend has it) and off."""
    shape, hconfigs = NETS[net]
    ds = tiny_dataset(n=40, shape=shape, classes=3)
    reuse = CnnModel("reuse", ds, None, hconfigs, backend=backend, seed=7, fuse=fuse)
    fresh = CnnModel("fresh", ds, None, hconfigs, backend=backend, seed=7, fuse=fuse)
    fresh.workspace = None
    return ds, reuse, fresh


def _pointers(ws: Workspace) -> dict:
    return {key: a.ctypes.data for key, a in ws.arrays().items()}


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "layers"])
@pytest.mark.parametrize("net", list(NETS))
def test_compute_step_reuses_buffers_bit_identically(net, fuse):
    ds, reuse, fresh = _models(net, fuse=fuse)
    ws = reuse.workspace
    assert isinstance(ws, Workspace) and ws.allocations == 0
    x0, _ = ds.get_train_data(np.arange(8))
    predicted = reuse.predict(x0)
    maps = []
    out0, _ = reuse.forward(x0, maps)
    kept = [predicted.copy(), out0.copy()] + [m.copy() for _, m in maps]
    assert ws.allocations == 0  # forward and predict do not use the workspace

    counts, pointers = [], []
    for step in range(3):
        x, y = ds.get_train_data(np.arange(8 * step, 8 * step + 8))
        loss_a, acc_a, grads_a = reuse.compute_step(x, y)
        loss_b, acc_b, grads_b = fresh.compute_step(x, y)
        assert np.float64(loss_a).tobytes() == np.float64(loss_b).tobytes(), step
        assert acc_a == acc_b
        assert grads_a.keys() == grads_b.keys() == reuse.params.keys()
        for key in grads_a:
            assert _bits(grads_a[key]) == _bits(grads_b[key]), (step, key)
            for buf in ws.arrays().values():  # no gradient handed out is a reused buffer
                assert not np.shares_memory(grads_a[key], buf), key
        counts.append(ws.allocations)
        pointers.append(_pointers(ws))
        # train both, so later steps run on changed parameters
        reuse.optimizer.update(reuse.params, grads_a)
        fresh.optimizer.update(fresh.params, grads_b)

    assert counts[0] > 0 and counts[0] == counts[1] == counts[2]
    assert pointers[1] == pointers[2] == pointers[0]
    for key in reuse.params:
        assert _bits(reuse.params[key]) == _bits(fresh.params[key]), key
    # what the caller got before the steps is unchanged by them
    for before, now in zip(kept, [predicted, out0] + [m for _, m in maps], strict=True):
        assert _bits(before) == _bits(now)
    # every conv and pooling layer keeps its output, except a conv fused with its pooling (which
    # keeps the pooling's code instead, and no gradient of the pooling's input); the first conv
    # has no g_x buffer; dense layers keep their input gradient, and their weight gradient only
    # with reuse_grads
    names = {name for name, _, _ in ws.arrays()}
    fused = {layer.key for step in reuse.steps if len(step.layers) == 2 for layer in step.layers}
    assert bool(fused) == (fuse and net != "c1-maxpad-stride2")  # padded pooling, strided conv: unfused
    first = reuse.layers[0].key
    assert f"{first}/g_x" not in names
    for layer in reuse.layers:
        if layer.spec.type == "conv":
            assert (f"{layer.key}/pre" in names) == (layer.key not in fused)
            assert (f"{layer.key}/pool_code" in names) == (layer.key in fused)
        if layer.spec.type in ("max", "avg"):
            assert f"{layer.key}/pre" in names
            assert (f"{layer.key}/g_x" in names) == (layer.key not in fused)
        if layer.spec.type == "full":
            assert f"{layer.key}/g_x" in names and f"{layer.key}/g_w" not in names


def test_arrays_returned_to_callers_are_never_buffers():
    ds, reuse, _ = _models("conv-max-conv-avg")
    x, y = ds.get_train_data(np.arange(6))
    reuse.compute_step(x, y)
    held = list(reuse.workspace.arrays().values())
    maps = []
    output, auxes = reuse.forward(x, maps)
    loss, grads, g_x, out2 = reuse.compute_gradients(x, y)
    returned = [output, g_x, out2, *grads.values(), *(m for _, m in maps)]
    returned += [a for aux in auxes for a in aux if isinstance(a, np.ndarray)]
    for a in returned:
        assert not any(np.shares_memory(a, buf) for buf in held)
    before = [a.copy() for a in returned]
    reuse.compute_step(x, y)  # a later step leaves them alone
    for a, b in zip(returned, before, strict=True):
        assert _bits(a) == _bits(b)


def test_alternating_batch_sizes_stop_allocating_after_two_steps():
    ds, reuse, fresh = _models("conv-max-conv-avg")
    ws = reuse.workspace
    counts = []
    for step, n in enumerate([8, 5, 8, 5, 8]):
        x, y = ds.get_train_data(np.arange(n) + step)
        loss_a, _, grads_a = reuse.compute_step(x, y)
        loss_b, _, grads_b = fresh.compute_step(x, y)
        assert loss_a == loss_b and all(_bits(grads_a[k]) == _bits(grads_b[k]) for k in grads_a)
        counts.append(ws.allocations)
    assert counts[1] == 2 * counts[0]
    assert counts[1] == counts[2] == counts[3] == counts[4]


def test_a_step_while_another_holds_the_workspace_allocates_its_own():
    ds, reuse, fresh = _models("conv-max-conv-avg")
    x, y = ds.get_train_data(np.arange(6))
    reuse.compute_step(x, y)
    count = reuse.workspace.allocations
    with reuse._step_workspace() as ws:  # as if a step ran in another thread
        assert ws is reuse.workspace
        loss_a, _, grads_a = reuse.compute_step(x, y)
    loss_b, _, grads_b = fresh.compute_step(x, y)
    assert reuse.workspace.allocations == count
    assert loss_a == loss_b and all(_bits(grads_a[k]) == _bits(grads_b[k]) for k in grads_a)


def test_train_runs_through_the_workspace():
    _, reuse, fresh = _models("conv-max-conv-avg")
    fresh.dataset = tiny_dataset(n=40, shape=NETS["conv-max-conv-avg"][0], classes=3)  # its own shuffles
    reuse.train(2, 8, 0.01, progress=False)
    fresh.train(2, 8, 0.01, progress=False)
    assert reuse.workspace.allocations > 0
    assert len(reuse.workspace.arrays()) == reuse.workspace.allocations  # one batch size: no misses
    for key in reuse.params:
        assert _bits(reuse.params[key]) == _bits(fresh.params[key]), key


def test_backends_that_copy_into_out_get_no_workspace(backend):
    if K.WRITES_INTO_OUT[backend]:
        pytest.skip("this backend writes into out itself")
    _, model, _ = _models("conv-max-conv-avg", backend)
    assert model.workspace is None


@pytest.mark.parametrize("net", list(NETS))
def test_reuse_grads_lends_the_dense_weight_gradients_bit_identically(net):
    ds, reuse, fresh = _models(net)
    ws = reuse.workspace
    dense = [layer.key for layer in reuse.layers if layer.spec.type == "full"]
    counts, pointers = [], []
    for step in range(3):
        x, y = ds.get_train_data(np.arange(8 * step, 8 * step + 8))
        loss_a, acc_a, grads_a = reuse.compute_step(x, y, reuse_grads=True)
        loss_b, acc_b, grads_b = fresh.compute_step(x, y, reuse_grads=True)  # no workspace: new arrays
        assert not ws.param_grads  # lent for the step only
        assert loss_a == loss_b and acc_a == acc_b
        for key in grads_a:
            assert _bits(grads_a[key]) == _bits(grads_b[key]), (step, key)
        lent = {f"{key}/w" for key in dense}
        for key in lent:  # the dense weight gradients are the workspace's own arrays
            assert any(grads_a[key] is buf for buf in ws.arrays().values()), key
        counts.append(ws.allocations)
        pointers.append({key: grads_a[key].ctypes.data for key in lent})
        reuse.optimizer.update(reuse.params, grads_a)
        fresh.optimizer.update(fresh.params, grads_b)
    assert counts[0] == counts[1] == counts[2]
    assert pointers[0] == pointers[1] == pointers[2]
    for key in reuse.params:
        assert _bits(reuse.params[key]) == _bits(fresh.params[key]), key
    # without reuse_grads the next step hands out new weight gradients again
    x, y = ds.get_train_data(np.arange(8))
    _, _, grads = reuse.compute_step(x, y)
    for key in dense:
        assert not any(np.shares_memory(grads[f"{key}/w"], buf) for buf in ws.arrays().values())


def _traced_peak(fn) -> int:
    """Bytes of NumPy/Python memory ``fn()`` holds at its peak beyond what was held before."""
    import tracemalloc

    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "layers"])
def test_a_warm_training_step_allocates_no_large_numpy_array(fuse):
    """tracemalloc sees every NumPy data allocation: a warm step's peak stays near its start."""
    shape, hconfigs = (16, 16, 1), [["conv", {"ksize": 5, "chn": 32}], ["max", {"stride": 2}], 64, 10]
    ds = tiny_dataset(n=200, shape=shape, classes=10)
    model = CnnModel("warm", ds, None, hconfigs, backend="numba", seed=3, fuse=fuse)
    x, y = ds.get_train_data(np.arange(100))
    big = 100 * 12 * 12 * 32 * 4  # one conv output: 1.8 MB

    def step():
        _, _, grads = model.compute_step(x, y, reuse_grads=True)
        model.optimizer.update(model.params, grads)

    for _ in range(2):  # compile, fill the workspace, make the optimizer state
        step()
    # what remains are small per-call temporaries (the conv g_k partial sums, 0.4 MB here)
    extra = _traced_peak(step)
    assert extra < big / 2, f"a warm step allocated {extra} bytes at its peak"
    # and the same step without the workspace does allocate conv-sized arrays (the check can fail);
    # fused, the conv output never becomes an array: the pooled one (a quarter) is the largest
    model.workspace = None
    assert _traced_peak(step) >= (big // 4 if fuse else big)
