"""Weights in and out (``fastcnn.interop``): DLfS pickles, the restricted unpickler,
the PyTorch twin, and ``fastcnn convert``.

The oracles are independent: ``tests/dlfs_reference.py`` (the book's networks
in float64 NCHW NumPy) and PyTorch itself (behind ``importorskip``).
"""

from __future__ import annotations

import builtins
import os
import pickle
import struct
import sys
from collections import OrderedDict

import numpy as np
import pytest

from fastcnn import CnnModel, cli
from fastcnn.interop import (
    ShapeDataset,
    from_torch_state_dict,
    load_dlfs_params,
    to_torch_module,
    to_torch_state_dict,
    torch_plan,
)
from fastcnn.nchw import chw_rows_to_hwc, hwc_rows_to_chw
from fastcnn.safe_pickle import UnsafePickleError, load_arrays
from fastcnn.zoo import PRESETS, get_preset

sys.path.insert(0, os.path.dirname(__file__))
import dlfs_reference as dlfs  # noqa: E402

RNG_SEED = 7


def make_model(hconfigs, shape=(28, 28, 1), classes=10, backend="numpy", dtype="float32"):
    return CnnModel("interop", ShapeDataset(shape, classes), None, hconfigs, backend=backend, seed=0,
                    dtype=dtype)


def assert_close(actual, expected):
    """float32 against a reference: 1e-5 relative to the largest output."""
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def simple_pickle(tmp_path_factory):
    """A SimpleConvNet ``save_params`` pickle, its params, inputs and the book's outputs."""
    rng = np.random.default_rng(RNG_SEED)
    params = dlfs.random_params(dlfs.SIMPLE_CONVNET, (1, 28, 28), 10, rng)
    path = tmp_path_factory.mktemp("dlfs") / "simple_convnet_params.pkl"
    dlfs.save_params(params, path)
    x = rng.random((6, 28, 28, 1))
    return path, params, x, dlfs.predict(dlfs.SIMPLE_CONVNET, params, nchw(x))


# -- Deep Learning from Scratch ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_simpleconvnet_pickle_predicts_as_the_book(simple_pickle, backend):
    path, _, x, expected = simple_pickle
    model = make_model(get_preset("simpleconvnet"), backend=backend)
    load_dlfs_params(model, path)
    assert_close(model.predict(x.astype(np.float32)), expected)


@pytest.mark.skipif("deepconvnet" not in PRESETS, reason="the deepconvnet preset is not in fastcnn.zoo")
def test_deepconvnet_pickle_predicts_as_the_book(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    params = dlfs.random_params(dlfs.DEEP_CONVNET, (1, 28, 28), 10, rng)
    dlfs.save_params(params, tmp_path / "deep_convnet_params.pkl")
    x = rng.random((4, 28, 28, 1))
    model = make_model(get_preset("deepconvnet"))
    load_dlfs_params(model, tmp_path / "deep_convnet_params.pkl")
    assert_close(model.predict(x.astype(np.float32)), dlfs.predict(dlfs.DEEP_CONVNET, params, nchw(x)))

    # the fold, explicitly: the dropout before the output layer scales its weights only, the
    # dropout after it scales its weights and its bias; the layer before is only re-ordered
    hidden, output = [la for la in model.layers if la.spec.type == "full"]
    assert np.allclose(hidden.params["w"], chw_rows_to_hwc(params["W7"], (4, 4, 64)), rtol=1e-6)
    assert np.allclose(hidden.params["b"], params["b7"], rtol=1e-6)
    assert np.allclose(output.params["w"], params["W8"] * 0.5 * 0.5, rtol=1e-6)
    assert np.allclose(output.params["b"], params["b8"] * 0.5, rtol=1e-6)


def test_dropout_fold_between_layers_scales_weights_not_bias(tmp_path):
    """``W (x (1 - r)) + b``: a DLfS dropout before a conv or affine scales that layer's weights."""
    rng = np.random.default_rng(RNG_SEED)
    net = [("conv", 1), ("relu",), ("dropout", 0.25), ("pool",), ("affine",), ("relu",), ("dropout", 0.4),
           ("affine",)]
    hconfigs = [["conv", {"ksize": 3, "chn": 4, "padding": 1}], ["dropout", {"keep_prob": 0.75}],
                ["max", {"stride": 2}], 12, ["dropout", {"keep_prob": 0.6}]]
    params = {"W1": rng.normal(0, 0.5, (4, 2, 3, 3)), "b1": rng.normal(0, 0.1, 4),
              "W2": rng.normal(0, 0.2, (4 * 4 * 4, 12)), "b2": rng.normal(0, 0.1, 12),
              "W3": rng.normal(0, 0.3, (12, 3)), "b3": rng.normal(0, 0.1, 3)}
    dlfs.save_params(params, tmp_path / "p.pkl")
    x = rng.random((5, 8, 8, 2))
    model = make_model(hconfigs, shape=(8, 8, 2), classes=3)
    load_dlfs_params(model, tmp_path / "p.pkl")
    assert_close(model.predict(x.astype(np.float32)), dlfs.predict(net, params, nchw(x)))
    dense = [la for la in model.layers if la.spec.type == "full"]
    assert np.allclose(dense[0].params["b"], params["b2"]) and np.allclose(dense[1].params["b"], params["b3"])
    assert np.allclose(dense[1].params["w"], params["W3"] * 0.6)


def test_output_dropout_scales_the_output(simple_pickle):
    path, _, x, expected = simple_pickle
    model = make_model(get_preset("simpleconvnet"))
    load_dlfs_params(model, path, output_dropout=0.5)
    assert_close(model.predict(x.astype(np.float32)), expected * 0.5)
    with pytest.raises(ValueError, match="output_dropout must be a ratio in"):
        load_dlfs_params(model, path, output_dropout=1.0)


def test_dropout_cannot_fold_across_sigmoid(tmp_path, simple_pickle):
    model = make_model([["conv", {"ksize": 5, "chn": 30, "padding": "valid"}],
                        ["dropout", {"keep_prob": 0.5}], ["max", {"stride": 2, "actfunc": "sigmoid"}], 100])
    with pytest.raises(ValueError, match=r"layer 2 \('max'.*'sigmoid'.*cannot be folded"):
        load_dlfs_params(model, simple_pickle[0])


def _rewrite(tmp_path, params, **changes):
    params = {**params, **changes}
    params = {k: v for k, v in params.items() if v is not None}
    path = tmp_path / "bad.pkl"
    dlfs.save_params(params, path)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"W2": np.zeros((4321, 100))}, r"W2 has shape \(4321, 100\) in the file, but layer 2 "
                                        r"\('full', layer02_full\) needs \(4320, 100\) \(in, out\)"),
        ({"W1": np.zeros((30, 3, 5, 5))}, r"W1 has shape \(30, 3, 5, 5\) in the file, .*"
                                          r"needs \(30, 1, 5, 5\) \(FN, C, FH, FW\)"),
        ({"W2": np.zeros((100, 4320))}, r"W2 has shape \(100, 4320\) in the file, .*needs \(4320, 100\)"),
        ({"b3": np.zeros((1, 10))}, r"b3 has shape \(1, 10\) in the file, .*needs \(10,\)"),
        ({"b3": None}, "missing: b3; unexpected: none"),
        ({"gamma1": np.ones(30)}, "missing: none; unexpected: 'gamma1'"),
        ({"W4": np.ones((10, 10)), "b4": np.ones(10)}, "the file has 4 weighted layers .*the model has 3"),
        ({"W1": np.zeros((30, 1, 5, 5), dtype=object)}, "W1 must be a numeric NumPy array, got object"),
        ({"b1": [0.0] * 30}, "b1 must be a numeric NumPy array, got list"),
    ],
)
def test_bad_keys_and_shapes_are_named(tmp_path, simple_pickle, changes, message):
    path = _rewrite(tmp_path, simple_pickle[1], **changes)
    model = make_model(get_preset("simpleconvnet"))
    before = {k: a.copy() for k, a in model.params.items()}
    with pytest.raises(ValueError, match=message) as info:
        load_dlfs_params(model, path)
    assert str(path) in str(info.value)
    assert all(np.array_equal(before[k], a) for k, a in model.params.items())  # nothing changed


def test_not_a_dict_and_not_a_pickle(tmp_path):
    model = make_model(get_preset("simpleconvnet"))
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(ValueError, match="list.pkl: expected a dict of arrays"):
        load_dlfs_params(model, tmp_path / "list.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x05 this is not a pickle")
    with pytest.raises(ValueError, match="junk.pkl is not a readable pickle of NumPy arrays"):
        load_dlfs_params(model, tmp_path / "junk.pkl")
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_dlfs_params(model, tmp_path / "missing.pkl")


def test_layer_without_dlfs_counterpart_is_named(simple_pickle):
    model = make_model([["conv", {"ksize": 5, "chn": 30, "padding": "valid"}], ["batch_normal"],
                        ["max", {"stride": 2}], 100])
    with pytest.raises(ValueError, match=r"layer 1 \('batch_normal'.*has no counterpart in a DLfS network"):
        load_dlfs_params(model, simple_pickle[0])


# -- the restricted unpickler ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_array_pickles_load_under_every_protocol(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    data = {"W1": rng.random((2, 3, 3, 3)), "b1": rng.random(2).astype(np.float32),
            "i": np.arange(5, dtype=np.int64), "f": np.asfortranarray(rng.random((3, 4))),
            "s": np.float64(1.5), "l": [1, 2.5, "x"], "o": OrderedDict(a=np.ones(2)), "t": (1, None, True)}
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_arrays(path)
    assert loaded.keys() == data.keys()
    for key in ("W1", "b1", "i", "f"):
        assert loaded[key].dtype == data[key].dtype and np.array_equal(loaded[key], data[key])
    assert loaded["s"] == 1.5 and loaded["l"] == [1, 2.5, "x"] and loaded["t"] == (1, None, True)
    assert np.array_equal(loaded["o"]["a"], np.ones(2))


@pytest.mark.parametrize("protocol", [0, 2, 3])
def test_numpy1_names_load(tmp_path, protocol):
    """Pickles written by NumPy 1 (and Python 2) name ``numpy.core.multiarray``."""
    raw = pickle.dumps({"W1": np.arange(6.0).reshape(2, 3)}, protocol=protocol)
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert np.array_equal(load_arrays(path)["W1"], np.arange(6.0).reshape(2, 3))


def _python2_pickle(key: str, arr: np.ndarray) -> bytes:
    """``{key: arr}`` (float64, at most 3-D) as Python 2's cPickle protocol 2 writes it with
    NumPy 1: ``numpy.core`` names, byte strings (``U``/``T`` opcodes) for text and data."""
    data = arr.astype("<f8").tobytes()
    shape = b"".join(b"K" + bytes([n]) for n in arr.shape) + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[arr.ndim]
    return (b"\x80\x02}U" + bytes([len(key)]) + key.encode()
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
            + b"(K\x01" + shape + b"cnumpy\ndtype\nU\x02f8K\x00K\x01\x87R"
            + b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89T" + struct.pack("<I", len(data)) + data + b"tbs.")


def test_python2_pickle_loads(tmp_path):
    path = tmp_path / "py2.pkl"
    path.write_bytes(_python2_pickle("W1", np.arange(6.0).reshape(2, 3)))
    loaded = load_arrays(path)
    assert list(loaded) == ["W1"] and np.array_equal(loaded["W1"], np.arange(6.0).reshape(2, 3))


class _Reduces:
    """Pickles as a call of ``func(*args)``: what a malicious pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious(kind: str, marker) -> bytes:
    command = f"touch {marker}"
    if kind == "os.system":  # written by hand: GLOBAL 'os system', as old exploits do
        return b"(dp0\nVW1\np1\ncos\nsystem\np2\n(V" + command.encode() + b"\ntp3\nRp4\ns."
    if kind == "posix.system":
        return pickle.dumps({"W1": _Reduces(os.system, command)})
    if kind == "builtins.eval":
        return pickle.dumps({"W1": _Reduces(builtins.eval, f"open({str(marker)!r}, 'w')")}, protocol=2)
    if kind == "builtins.getattr":  # hidden inside a valid array dict
        return pickle.dumps({"W1": np.ones(2), "b1": _Reduces(getattr, np.ones(2), "tofile")}, protocol=4)
    if kind == "_codecs.encode":  # allowed for latin-1 only
        return b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["os.system", "posix.system", "builtins.eval", "builtins.getattr",
                                  "_codecs.encode"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(_malicious(kind, marker))
    model = make_model(get_preset("simpleconvnet"))
    with pytest.raises(UnsafePickleError) as info:
        load_dlfs_params(model, path)
    message = str(info.value)
    refused = {"builtins.eval": "__builtin__.eval", "_codecs.encode": "latin-1 text"}.get(kind, kind)
    assert str(path) in message and refused in message  # protocol 2 writes Python 2's __builtin__
    assert not marker.exists()


# -- PyTorch ------------------------------------------------------------------------------------

TORCH_NETS = {
    "simpleconvnet": (get_preset("simpleconvnet"), (12, 12, 1), 10),
    # SAME with an even kernel and with a stride (asymmetric pads), padded avg pool, sigmoid/tanh
    "mixed": ([["conv", {"ksize": 4, "chn": 3}], ["conv", {"ksize": 3, "chn": 5, "stride": 2}],
               ["avg", {"stride": 2, "ksize": 3, "padding": 1}], ["max", {"stride": 1, "ksize": 2}],
               ["full", {"width": 7, "actfunc": "tanh"}], ["dropout", {"keep_prob": 0.7}],
               ["full", {"width": 6, "actfunc": "sigmoid"}]], (9, 10, 2), 4),
    "deepconvnet": (PRESETS.get("deepconvnet"), (28, 28, 1), 10),
}


@pytest.mark.parametrize("name", list(TORCH_NETS))
def test_torch_twin_equals_fastcnn_both_ways(name):
    torch = pytest.importorskip("torch")
    hconfigs, shape, classes = TORCH_NETS[name]
    if hconfigs is None:
        pytest.skip("the deepconvnet preset is not in fastcnn.zoo")
    x = np.random.default_rng(RNG_SEED).random((3, *shape)).astype(np.float32)
    model = make_model(hconfigs, shape=shape, classes=classes)
    net = to_torch_module(model)  # fastcnn -> torch
    with torch.no_grad():
        assert_close(net(torch.from_numpy(nchw(x))).numpy(), model.predict(x))

    torch.manual_seed(0)
    for module in net.modules():  # new weights in torch -> fastcnn
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.reset_parameters()
            torch.nn.init.normal_(module.bias, 0, 0.1)
    other = make_model(hconfigs, shape=shape, classes=classes)
    from_torch_state_dict(other, net.state_dict())
    with torch.no_grad():
        assert_close(other.predict(x), net(torch.from_numpy(nchw(x))).numpy())
    back = to_torch_state_dict(other)
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())


def test_torch_twin_float64():
    torch = pytest.importorskip("torch")
    model = make_model(TORCH_NETS["mixed"][0], shape=(9, 10, 2), classes=4, dtype="float64")
    net = to_torch_module(model)
    x = np.random.default_rng(1).random((2, 9, 10, 2))
    assert next(net.parameters()).dtype == torch.float64
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(nchw(x))).numpy(), model.predict(x), rtol=1e-12)


def test_torch_state_dict_errors_are_named():
    """Works from NumPy arrays too (no torch needed); nothing changes on a bad dict."""
    model = make_model(get_preset("simpleconvnet"), shape=(12, 12, 1))
    plan = torch_plan(model)
    keys = [f"{i}.{p}" for i, (_, _, layer) in enumerate(plan) if layer for p in ("weight", "bias")]
    assert keys == ["0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    good = {"0.weight": np.zeros((30, 1, 5, 5)), "0.bias": np.zeros(30), "4.weight": np.zeros((100, 480)),
            "4.bias": np.zeros(100), "6.weight": np.zeros((10, 100)), "6.bias": np.zeros(10)}
    before = {k: a.copy() for k, a in model.params.items()}
    with pytest.raises(ValueError, match=r"4.weight has shape \(480, 100\), but layer 2 \('full'.*"
                       r"needs \(100, 480\)"):
        from_torch_state_dict(model, {**good, "4.weight": np.zeros((480, 100))})
    with pytest.raises(ValueError, match="missing: 6.bias; unexpected: 7.bias"):
        wrong = {**{k: v for k, v in good.items() if k != "6.bias"}, "7.bias": np.zeros(10)}
        from_torch_state_dict(model, wrong)
    with pytest.raises(TypeError, match="expected a state dict"):
        from_torch_state_dict(model, [1, 2])
    assert all(np.array_equal(before[k], a) for k, a in model.params.items())
    from_torch_state_dict(model, good)
    assert not model.params["layer00_conv/k"].any()


def test_layer_without_torch_twin_is_named():
    model = make_model([["conv", {"ksize": 3, "chn": 2}], ["batch_normal"], 5], shape=(6, 6, 1))
    message = r"layer 1 \('batch_normal', layer01_batch_normal\) has no PyTorch twin"
    with pytest.raises(ValueError, match=message):
        torch_plan(model)


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    model = make_model(get_preset("simpleconvnet"), shape=(12, 12, 1))
    for func in (to_torch_state_dict, to_torch_module):
        with pytest.raises(ImportError, match="PyTorch is not installed"):
            func(model)


def test_layout_helpers_invert_each_other():
    w = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(24, 5)
    assert np.array_equal(hwc_rows_to_chw(chw_rows_to_hwc(w, (3, 4, 2)), (3, 4, 2)), w)
    # row (h=1, w=2, c=1) of the fastcnn weight is row (c=1, h=1, w=2) of the NCHW one
    assert np.array_equal(chw_rows_to_hwc(w, (3, 4, 2))[(1 * 4 + 2) * 2 + 1], w[1 * 12 + 1 * 4 + 2])


# -- fastcnn convert ------------------------------------------------------------------------------


def test_cli_convert_dlfs_to_npz(tmp_path, simple_pickle, capsys):
    path, _, x, expected = simple_pickle
    out = tmp_path / "params.npz"
    argv = ["convert", "--preset", "simpleconvnet", "--from-dlfs", str(path), "--out", str(out)]
    assert cli.main(argv) == 0
    assert f"-> {out}" in capsys.readouterr().out
    model = make_model(get_preset("simpleconvnet"))
    model.load_params(out)
    assert_close(model.predict(x.astype(np.float32)), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["params.npz"]  # no temp file left
    copy = tmp_path / "copy.npz"
    assert cli.main([*argv[:3], "--from-params", str(out), "--out", str(copy)]) == 0
    with np.load(out) as a, np.load(copy) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_cli_convert_through_torch(tmp_path, simple_pickle):
    pytest.importorskip("torch")
    path, _, x, expected = simple_pickle
    hconfig = tmp_path / "net.json"
    hconfig.write_text('[["conv", {"ksize": 5, "chn": 30, "padding": "valid"}], ["max", {"stride": 2}], 100]')
    base = ["convert", "--hconfig", str(hconfig)]
    assert cli.main([*base, "--from-dlfs", str(path), "--out", str(tmp_path / "w.pt")]) == 0
    assert cli.main([*base, "--from-torch", str(tmp_path / "w.pt"), "--out", str(tmp_path / "w.npz")]) == 0
    model = make_model(get_preset("simpleconvnet"))
    model.load_params(tmp_path / "w.npz")
    assert_close(model.predict(x.astype(np.float32)), expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "simpleconvnet", "--from-dlfs", "{evil}", "--out", "o.npz"],
         "refused global os.system"),
        (["--preset", "simpleconvnet", "--from-dlfs", "{pkl}", "--out", "o.txt"],
         "unknown output type '.txt'"),
        (["--preset", "deepconvnet", "--from-dlfs", "{pkl}", "--out", "o.npz"],
         "the file has 3 weighted layers (W1..W3), the model has 8"),
        (["--preset", "simpleconvnet", "--out", "o.npz"], "one of the arguments --from-dlfs"),
        (["--preset", "nope", "--from-dlfs", "{pkl}", "--out", "o.npz"], "unknown preset 'nope'"),
        (["--preset", "simpleconvnet", "--from-dlfs", "{pkl}", "--out", "o.npz", "--input-shape", "28x28"],
         "--input-shape: expected HxWxC"),
        (["--preset", "simpleconvnet", "--from-dlfs", "{pkl}", "--out", "o.pt", "NO_TORCH"],
         "PyTorch is not installed"),
    ],
)
def test_cli_convert_errors_exit_2(tmp_path, simple_pickle, capsys, monkeypatch, args, message):
    (tmp_path / "evil.pkl").write_bytes(_malicious("os.system", tmp_path / "pwned"))
    if "NO_TORCH" in args:
        monkeypatch.setitem(sys.modules, "torch", None)
        args = [a for a in args if a != "NO_TORCH"]
    monkeypatch.chdir(tmp_path)
    args = [a.format(evil=tmp_path / "evil.pkl", pkl=simple_pickle[0]) for a in args]
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastcnn: error:") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o.npz").exists()
