"""hconfig grammar: every bad layer config fails at construction, naming index, type and key."""

from __future__ import annotations

import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn.hconfig import normalize_hconfigs, parse_hconfigs
from fastcnn.layers import LAYERS
from fastcnn.zoo import PRESETS, get_preset

CONV = {"ksize": 3, "chn": 2}

BAD = [
    ([["pool", {}]], ValueError, r"layer 0: unknown layer type 'pool'; valid types: full, conv, max, avg"),
    ([["conv", {"ksize": 3}]], ValueError, r"layer 0 \('conv'\), key 'chn': missing"),
    ([["conv", {"ksize": 0, "chn": 2}]], ValueError, r"layer 0 \('conv'\), key 'ksize': must be positive"),
    ([["conv", {**CONV, "ksz": 3}]], ValueError, r"layer 0 \('conv'\), key 'ksz': unknown key; valid keys"),
    ([["conv", {"ksize": [3, 3, 3], "chn": 2}]], TypeError, r"layer 0 \('conv'\), key 'ksize'"),
    ([["conv", {"ksize": 3, "chn": 2.5}]], TypeError, r"layer 0 \('conv'\), key 'chn'"),
    ([["conv", {**CONV, "padding": "full"}]], ValueError, r"layer 0 \('conv'\), key 'padding'"),
    ([["conv", {**CONV, "stride": -1}]], ValueError, r"layer 0 \('conv'\), key 'stride'"),
    ([["conv", {**CONV, "actfunc": "softplus"}]], ValueError, r"layer 0 \('conv'\), key 'actfunc'.*relu"),
    ([["conv", {"ksize": 9, "chn": 2, "padding": "valid"}]], ValueError,
     r"layer 0 \('conv'\), key 'ksize': kernel 9x9 is larger"),
    ([["max", {"stride": 7}]], ValueError, r"layer 0 \('max'\), key 'stride': pooling window 7x7 is larger"),
    ([["avg", {"stride": 2, "ksize": 8}]], ValueError, r"layer 0 \('avg'\), key 'ksize'.*larger"),
    ([["max", {}]], ValueError, r"layer 0 \('max'\), key 'stride': missing"),
    ([["max", {"stride": 2, "padding": 2}]], ValueError, r"layer 0 \('max'\), key 'padding'"),
    ([64, ["max", {"stride": 2}]], ValueError, r"layer 1 \('max'\).*flat input of shape \(64,\)"),
    ([16, ["conv", CONV]], ValueError, r"layer 1 \('conv'\).*flat input"),
    ([8, -5], ValueError, r"layer 1 \('full'\), key 'width': must be positive"),
    ([["full", {"width": "ten"}]], TypeError, r"layer 0 \('full'\), key 'width'"),
    ([["full", {}]], ValueError, r"layer 0 \('full'\), key 'width': missing"),
    ([["full", {"width": 4, "actfunc": "elu"}]], ValueError, r"layer 0 \('full'\), key 'actfunc'"),
    ([3.5], TypeError, r"hconfig layer 0: expected an int width"),
    ([True], TypeError, r"hconfig layer 0: expected an int width"),
    (["conv", 3], TypeError, r"layer 0 \('conv'\): settings must be a dict"),
    ([["conv", CONV, {}]], TypeError, r"hconfig layer 0: expected"),
    ("conv", TypeError, r"hconfigs must be a list"),
]


@pytest.mark.parametrize("hconfigs, kind, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_hconfig_is_reported_at_construction(hconfigs, kind, message):
    ds = tiny_dataset()
    with pytest.raises(kind, match=message):
        CnnModel("bad", ds, None, hconfigs, backend="numpy")


def test_single_hconfig_is_wrapped_like_the_seed():
    assert normalize_hconfigs(["conv", CONV]) == [["conv", CONV]]
    assert normalize_hconfigs(10) == [10]
    model = CnnModel("one", tiny_dataset(), None, ["conv", CONV], backend="numpy", seed=0)
    assert [la.spec.type for la in model.layers] == ["conv", "full"]
    assert model.layers[0].output_shape == (6, 6, 2)
    assert model.layers[-1].output_shape == (3,)
    assert model.layers[-1].spec.actfunc == "none"


def test_grammar_defaults_and_shapes():
    specs = parse_hconfigs(
        [5, ["conv", {"ksize": [3, 1], "chn": 4}], ["max", {"stride": 2}], ["avg", {"ksize": 3}]]
    )
    assert [s.type for s in specs] == ["full", "conv", "max", "avg"]
    assert [s.actfunc for s in specs] == ["relu", "relu", "none", "none"]
    ds = tiny_dataset(shape=(9, 8, 1))
    model = CnnModel("shapes", ds, None, [
        ["conv", {"ksize": [3, 2], "chn": 4, "stride": 2}],   # same, ceil(9/2) x ceil(8/2)
        ["max", {"stride": 2, "ksize": 3, "padding": "same"}],  # ceil(5/2) x ceil(4/2)
        ["avg", {"stride": 2}],                               # remainder dropped
        7,
    ], backend="numpy", seed=0)
    assert [la.output_shape for la in model.layers] == [(5, 4, 4), (3, 2, 4), (1, 1, 4), (7,), (3,)]
    assert model.params["layer00_conv/k"].shape == (3, 2, 1, 4)
    assert {"full", "conv", "max", "avg", "dropout", "noise", "batch_normal"} <= set(LAYERS)


def test_bad_model_arguments():
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="unknown backend 'cuda'; valid backends: numba, numba-aot, numpy"):
        CnnModel("m", ds, None, [4], backend="cuda")
    with pytest.raises(ValueError, match="unknown mode 'softmax'; valid modes: select, binary"):
        CnnModel("m", ds, "softmax", [4], backend="numpy")
    with pytest.raises(ValueError, match="dtype"):
        CnnModel("m", ds, None, [4], dtype="int32", backend="numpy")
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; valid: sgd, momentum, adagrad, adam"):
        CnnModel("m", ds, None, [4], optimizer="rmsprop", backend="numpy")
    with pytest.raises(ValueError, match="init"):
        CnnModel("m", ds, None, [4], init="xavier", backend="numpy")


@pytest.mark.parametrize(
    "preset, shape, classes, out_shapes",
    [
        ("digits", (8, 8, 1), 10, [(8, 8, 16), (4, 4, 16), (64,), (10,)]),
        ("simpleconvnet", (28, 28, 1), 10, [(24, 24, 30), (12, 12, 30), (100,), (10,)]),
        ("lenet", (28, 28, 1), 10,
         [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (120,), (84,), (10,)]),
        ("flower", (96, 96, 3), 5, [(96, 96, 6), (48, 48, 6), (48, 48, 12), (24, 24, 12), (24, 24, 24),
                                    (8, 8, 24), (5,)]),
    ],
)
def test_presets_build(preset, shape, classes, out_shapes):
    ds = tiny_dataset(n=4, shape=shape, classes=classes)
    model = CnnModel(preset, ds, None, get_preset(preset), backend="numpy", seed=0)
    assert [la.output_shape for la in model.layers] == out_shapes


def test_office31_preset_is_the_seeds():
    assert PRESETS["office31"] == [
        ["conv", {"ksize": 3, "chn": 6}], ["max", {"stride": 2}],
        ["conv", {"ksize": 3, "chn": 12}], ["max", {"stride": 2}],
        ["conv", {"ksize": 3, "chn": 24}], ["avg", {"stride": 3}],
    ]
    ds = tiny_dataset(n=4, shape=(96, 96, 3), classes=31, mode="dual_select")
    model = CnnModel("office", ds, None, get_preset("office31"), backend="numpy", seed=0)
    assert model.mode.name == "dual_select"
    assert model.layers[-1].output_shape == (33,)
    assert model.layers[-2].output_shape == (8, 8, 24)


def test_get_preset_errors_and_copies():
    with pytest.raises(ValueError, match="unknown preset 'vgg'; valid presets: digits, simpleconvnet"):
        get_preset("vgg")
    copy = get_preset("digits")
    copy[0][1]["chn"] = 99
    assert PRESETS["digits"][0][1]["chn"] == 16
