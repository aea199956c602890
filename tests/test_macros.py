"""Macros and ``#arg`` substitution, ``dump_structure`` / ``param_count`` against the book's
printed dumps, and bad composite configs named by layer index and key."""

from __future__ import annotations

import io

import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn.hconfig import parse_hconfigs
from fastcnn.macros import MACROS, get_macro, set_macro, substitute
from fastcnn.structure import build_shape_only, dump_hconfigs, param_count
from fastcnn.zoo import get_preset

#: the book's dump of plain_flower (TR c6), exactly
PLAIN_FLOWER = """\
custom plain_flower
  serial
    1: conv, (64, 64, 3)=>[32, 32, 16] pm:7x7x3x16+16=2368
    2: max, [32, 32, 16]=>[16, 16, 16]
    loop
      3: conv, [16, 16, 16]=>[16, 16, 16] pm:3x3x16x16+16=2320
      4: conv, [16, 16, 16]=>[16, 16, 16] pm:3x3x16x16+16=2320
      5: conv, [16, 16, 16]=>[16, 16, 16] pm:3x3x16x16+16=2320
      6: conv, [16, 16, 16]=>[16, 16, 16] pm:3x3x16x16+16=2320
    custom pn
      serial
        7: conv, [16, 16, 16]=>[8, 8, 32] pm:3x3x16x32+32=4640
        loop
          8: conv, [8, 8, 32]=>[8, 8, 32] pm:3x3x32x32+32=9248
          9: conv, [8, 8, 32]=>[8, 8, 32] pm:3x3x32x32+32=9248
          10: conv, [8, 8, 32]=>[8, 8, 32] pm:3x3x32x32+32=9248
    custom pn
      serial
        11: conv, [8, 8, 32]=>[4, 4, 64] pm:3x3x32x64+64=18496
        loop
          12: conv, [4, 4, 64]=>[4, 4, 64] pm:3x3x64x64+64=36928
          13: conv, [4, 4, 64]=>[4, 4, 64] pm:3x3x64x64+64=36928
          14: conv, [4, 4, 64]=>[4, 4, 64] pm:3x3x64x64+64=36928
    15: avg, [4, 4, 64]=>[1, 1, 64]
16: full, [1, 1, 64]=>[5] pm:64x5+5=325
Total parameter count: 173637"""


@pytest.fixture
def macro():
    """``macro(name, config)``: a test macro, removed again after the test."""
    added = []

    def add(name, config):
        set_macro(name, config)
        added.append(name)

    yield add
    for name in added:
        MACROS.pop(name, None)


def test_plain_flower_dump_is_the_books(capsys):
    ds = tiny_dataset(n=6, shape=(64, 64, 3), classes=5)
    model = CnnModel("plain", ds, None, get_preset("plain_flower"), backend="numpy", seed=0,
                     dump_structure=True)
    assert capsys.readouterr().out == PLAIN_FLOWER + "\n"
    assert model.dump_structure(io.StringIO()) == PLAIN_FLOWER
    assert model.param_count == 173637 and isinstance(model.param_count, int)


def test_small_model_dump_and_count():
    ds = tiny_dataset(n=6, shape=(6, 6, 2), classes=3)
    model = CnnModel("small", ds, None, [
        ["parallel", ["conv", {"ksize": 1, "chn": 2, "actions": "LAB"}], ["max", {"ksize": 3, "stride": 1,
                                                                                  "padding": "same"}]],
        ["add", {"x": False}, ["conv", {"ksize": 3, "chn": 4}], ["avg", {"stride": 1}]], 7], backend="numpy")
    assert model.dump_structure(io.StringIO()).splitlines() == [
        "parallel",
        "  1: conv, (6, 6, 2)=>[6, 6, 2] pm:1x1x2x2+2=6",
        "  2: max, (6, 6, 2)=>[6, 6, 2]",
        "add",
        "  3: conv, [6, 6, 4]=>[6, 6, 4] pm:3x3x4x4+4=148",
        "  4: avg, [6, 6, 4]=>[6, 6, 4]",
        "5: full, [6, 6, 4]=>[7] pm:144x7+7=1015",
        "6: full, [7]=>[3] pm:7x3+3=24",
        "Total parameter count: 1193",
    ]
    assert model.param_count == 1193


@pytest.mark.parametrize("name, shape, outputs, act, total, leaves", [
    ("plain_flower", (64, 64, 3), 5, "LAB", 173637, 16),
    ("residual_flower", (64, 64, 3), 5, "LAB", 173637, 18),
    ("bottleneck_flower", (64, 64, 3), 5, "LAB", 189925, 24),
    ("inception_flower", (96, 96, 3), 5, "LAB", 43885, 48),
    ("inception_flower", (96, 96, 3), 5, "LA", 43885, 48),
    ("vgg_19", (224, 224, 3), 1000, "LA", 143667240, 24),
    ("plain_34", (224, 224, 3), 1000, "LA", 21616232, 36),
    ("residual_34", (224, 224, 3), 1000, "LA", 21616232, 39),
    ("bottleneck_152", (224, 224, 3), 1000, "LAB", 57344360, 157),
    ("inception_v3", (299, 299, 3), 200, "LA", 32401768, 110),
])
def test_book_macro_totals(name, shape, outputs, act, total, leaves):
    """The printed totals of the book (TI c9, c13; TR c1-c8), built on lazy zero weights."""
    out = io.StringIO()
    text = dump_hconfigs([["custom", {"name": name, "args": {"#act": act}}]], shape, outputs, out)
    lines = text.splitlines()
    assert lines[-1] == f"Total parameter count: {total}"
    assert lines[-2].startswith(f"{leaves}: full, [")  # every leaf indexed, the output layer last


def test_flower_presets_build_with_the_books_shapes():
    layers = build_shape_only(get_preset("bottleneck_flower"), (64, 64, 3), 5)
    text = "\n".join(dump_hconfigs(get_preset("residual_flower"), (64, 64, 3), 5, io.StringIO()).splitlines())
    assert "            9: avg, [16, 16, 16]=>[8, 8, 16]" in text
    assert "            14: avg, [8, 8, 32]=>[4, 4, 32]" in text
    assert param_count(layers) == 189925
    inception = dump_hconfigs(get_preset("inception_flower"), (96, 96, 3), 5, io.StringIO())
    assert "48: full, [1, 1, 48]=>[5] pm:48x5+5=245" in inception


def test_substitution():
    config = ["serial", {"x": "#a"}, ("#a", "##a", "#b"), {"#a": ["#b", "plain"]}, ""]
    out = substitute(config, {"#a": [1, 2], "#b": 3}, "m")
    assert out == ["serial", {"x": [1, 2]}, ([1, 2], "#a", 3), {"#a": [3, "plain"]}, ""]  # keys never change
    assert out[1]["x"] is not out[2][0]  # each use is its own copy
    nested = get_macro("rfull", {"#cnt": 2, "#n": 8, "#act": "LA"})
    rf = ["custom", {"name": "rf", "args": {"#n": 8, "#act": "LA"}}]
    assert nested == ["serial", ["loop", {"repeat": 2}, rf]]
    assert MACROS["rfull"][1][1]["repeat"] == "#cnt"  # the table entry is untouched


def test_hconfigs_are_not_modified(macro):
    macro("m_plain", ["serial", ["conv", {"ksize": 3, "chn": "#c"}]])
    hconfigs = [["serial", ["custom", {"name": "m_plain", "args": {"#c": 2}}], ["max", {"stride": 2}]]]
    before = repr(hconfigs)
    specs = parse_hconfigs(hconfigs)
    assert repr(hconfigs) == before  # no {} inserted, nothing substituted in place (E11)
    assert [c.type for c in specs[0].children] == ["custom", "max"]
    assert specs[0].children[0].children[0].children[0].settings == {"ksize": 3, "chn": 2}


CONV = ["conv", {"ksize": 3, "chn": 2}]

BAD = [
    ([["custom", {"name": "no_such"}]], ValueError,
     r"hconfig layer 0 \('custom'\), key 'name': unknown macro 'no_such'; known macros: .*bf"),
    ([["custom", {"name": "m_self"}]], ValueError,
     r"layer 0\.0\.1 \('custom'\) in macro 'm_self', key 'name': macro 'm_self' expands into itself "
     r"\(m_self -> m_self\)"),
    ([CONV, ["custom", {"name": "m_a"}]], ValueError,
     r"layer 1\.0\.0\.0 \('custom'\) in macro 'm_b', key 'name': macro 'm_a' expands into itself "
     r"\(m_a -> m_b -> m_a\)"),
    ([["custom", {"name": "rf", "args": {"#n": 4}}]], ValueError,
     r"layer 0 \('custom'\), key 'args': macro 'rf': argument '#act' is not given"),
    ([["custom", {"name": "m_hash"}]], ValueError, r"key 'args': macro 'm_hash': a bare '#'"),
    ([["custom", {"name": "rf", "args": [4]}]], TypeError,
     r"layer 0 \('custom'\), key 'args': must be a dict"),
    ([["custom", {}]], ValueError, r"layer 0 \('custom'\), key 'name': missing"),
    ([["custom", {"name": "rf"}, CONV]], ValueError, r"layer 0 \('custom'\): takes no child layers"),
    ([["parallel", CONV, ["max", {"stride": 2}]]], ValueError,
     r"layer 0 \('parallel'\): branch outputs cannot be joined on the channel axis.*"
     r"child 0 \[6, 6, 2\], child 1 \[3, 3, 2\]"),
    ([CONV, ["parallel", CONV, 5]], ValueError, r"layer 1 \('parallel'\): branch outputs cannot be joined"),
    ([["add", {"x": True}, ["conv", {"ksize": 3, "chn": 3}]]], ValueError,
     r"layer 0 \('add'\), key 'x': cannot add the input \(x: True\) \[6, 6, 2\] to child 0 \[6, 6, 3\]"),
    ([["add", {"x": False}, ["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}]]], ValueError,
     r"layer 0 \('add'\): cannot add child 1 \[3, 3, 2\] to child 0 \[6, 6, 4\]"),
    ([["add", {"x": 1}, CONV]], TypeError, r"layer 0 \('add'\), key 'x': must be True or False"),
    ([["add", {"actions": "AL"}, CONV]], ValueError,
     r"layer 0 \('add'\), key 'actions': unknown letter\(s\) 'L'"),
    ([["loop", {"repeat": 0}, CONV]], ValueError, r"layer 0 \('loop'\), key 'repeat': must be >= 1, got 0"),
    ([["loop", {"repeat": -2}, CONV]], ValueError, r"key 'repeat': must be >= 1"),
    ([["loop", {"repeat": 2.5}, CONV]], TypeError, r"layer 0 \('loop'\), key 'repeat': must be an int"),
    ([["loop", {"repeat": 2}, CONV, CONV]], ValueError, r"layer 0 \('loop'\): repeats exactly one child"),
    ([["serial"]], ValueError, r"layer 0 \('serial'\): needs at least one child"),
    ([["serial", {"repeat": 2}, CONV]], ValueError, r"layer 0 \('serial'\), key 'repeat': unknown key"),
    ([["serial", CONV, ["conv", {"ksize": 3}]]], ValueError, r"layer 0\.1 \('conv'\), key 'chn': missing"),
    ([["conv", {"ksize": 3, "chn": 2, "actions": "LAX"}]], ValueError,
     r"layer 0 \('conv'\), key 'actions': unknown letter\(s\) 'X' in 'LAX'; valid letters: L, A, B"),
    ([["conv", {"ksize": 3, "chn": 2, "actions": "LAL"}]], ValueError,
     r"layer 0 \('conv'\), key 'actions': letter\(s\) 'L' repeated in 'LAL'"),
    ([["conv", {"ksize": 3, "chn": 2, "actions": "AB"}]], ValueError, r"key 'actions': 'AB' has no 'L'"),
    ([["conv", {"ksize": 3, "chn": 2, "actions": ""}]], ValueError, r"key 'actions': '' has no 'L'"),
    ([["conv", {"ksize": 3, "chn": 2, "actions": 3}]], TypeError, r"key 'actions': must be a string"),
    ([["serial", ["loop", {"repeat": 0}, CONV]]], ValueError, r"layer 0\.0 \('loop'\), key 'repeat'"),
]


@pytest.mark.parametrize("hconfigs, kind, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_composites_are_named_by_layer_and_key(hconfigs, kind, message, macro):
    macro("m_self", ["serial", CONV, ["custom", {"name": "m_self"}]])
    macro("m_a", ["serial", ["custom", {"name": "m_b"}]])
    macro("m_b", ["custom", {"name": "m_a"}])
    macro("m_hash", ["conv", {"ksize": 3, "chn": "#"}])
    with pytest.raises(kind, match=message):
        CnnModel("bad", tiny_dataset(), None, hconfigs, backend="numpy")


def test_cli_structure_and_train_dump(capsys, tmp_path):
    from fastcnn.cli import main

    assert main(["structure", "--model", "plain_flower"]) == 0
    assert capsys.readouterr().out == PLAIN_FLOWER.replace("(64, 64, 3)", "[64, 64, 3]") + "\n"
    hconfig = '[["custom", {"name": "vgg_19"}]]'
    assert main(["structure", "--hconfig", hconfig, "--input-shape", "224x224x3", "--classes", "1000"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Total parameter count: 143667240"
    with pytest.raises(SystemExit) as exc:
        main(["structure", "--hconfig", '[["loop", {"repeat": 0}, 4]]'])
    assert exc.value.code == 2
    assert "hconfig layer 0 ('loop'), key 'repeat': must be >= 1" in capsys.readouterr().err
    assert main(["train", "--dump-structure", "--epochs", "0", "--show", "0", "--backend", "numpy",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "1: conv, (8, 8, 1)=>[8, 8, 16] pm:3x3x1x16+16=160" in out
    assert "Total parameter count: " in (tmp_path / "run" / "report.txt").read_text()
