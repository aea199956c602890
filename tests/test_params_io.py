"""save_params / load_params: npz without pickle, architecture checks, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_helpers import tiny_dataset

import fastcnn.params_io as pio
from fastcnn import CnnModel

NET = [["conv", {"ksize": 3, "chn": 3}], ["max", {"stride": 2}], ["avg", {"stride": 3}], 5]


def _model(net=NET, seed=0, **kw):
    return CnnModel("io", tiny_dataset(), None, net, backend="numpy", seed=seed, **kw)


def test_round_trip_gives_identical_predictions(tmp_path, capsys):
    model = _model(seed=1)
    model.train(2, 8, 0.01, progress=False)
    path = model.save_params(tmp_path / "p.npz")
    other = _model(seed=2)
    x = model.dataset.get_test_data()[0]
    assert not np.array_equal(other.predict(x), model.predict(x))
    other.load_params(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    for key in model.params:
        np.testing.assert_array_equal(other.params[key], model.params[key])
    # loading keeps the layers' own arrays (the optimizer and layers share them)
    assert other.layers[0].params["k"] is other.params["layer00_conv/k"]


def test_file_layout_is_plain_npz(tmp_path):
    path = _model().save_params(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted([
            "__meta__", "layer00_conv/k", "layer00_conv/b", "layer04_full/w", "layer04_full/b",
            "layer03_full/w", "layer03_full/b",
        ])
        meta = data["__meta__"]
        assert meta.shape == () and meta.dtype.kind == "U"
        info = json.loads(str(meta))
    assert [la["type"] for la in info["layers"]] == ["conv", "max", "avg", "full", "full"]
    assert info["layers"][0]["params"] == {"k": [3, 3, 2, 3], "b": [3]}
    assert info["input_shape"] == [6, 6, 2]


def test_loads_across_dtypes(tmp_path):
    model = _model(seed=1)
    path = model.save_params(tmp_path / "p.npz")
    wide = _model(seed=3, dtype="float64")
    wide.load_params(path)
    assert wide.params["layer00_conv/k"].dtype == np.float64
    np.testing.assert_array_equal(wide.params["layer00_conv/k"], model.params["layer00_conv/k"])


def test_wrong_architecture_names_layer_key_and_shapes(tmp_path):
    path = _model().save_params(tmp_path / "p.npz")
    wider = _model([["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], ["avg", {"stride": 3}], 5])
    before = wider.params["layer03_full/w"].copy()
    with pytest.raises(ValueError, match=r"layer00_conv/k has shape \(3, 3, 2, 3\) in the file but "
                                         r"layer00_conv/k has shape \(3, 3, 2, 4\) in the model"):
        wider.load_params(path)
    np.testing.assert_array_equal(wider.params["layer03_full/w"], before)  # nothing half loaded
    other_type = _model([["conv", {"ksize": 3, "chn": 3}], ["avg", {"stride": 2}], ["avg", {"stride": 3}], 5])
    with pytest.raises(ValueError, match=r"p.npz: layer 1 is 'max' \(layer01_max\) in the file but 'avg'"):
        other_type.load_params(path)
    deeper = _model(NET + [7])
    with pytest.raises(ValueError, match="layer 4 is 'full'.*the file has 5 layers|the file has 5 layers"):
        deeper.load_params(path)


def test_corrupt_and_foreign_files(tmp_path):
    model = _model()
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match=r"junk.npz is not a readable fastcnn params file"):
        model.load_params(junk)
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(model.save_params(tmp_path / "good.npz").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut.npz"):
        model.load_params(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    with pytest.raises(ValueError, match=r"foreign.npz is not a fastcnn params file: it has no '__meta__'"):
        model.load_params(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled.npz"):
        model.load_params(pickled)
    with pytest.raises(FileNotFoundError, match=r"params file not found: .*missing.npz"):
        model.load_params(tmp_path / "missing.npz")


def test_failed_save_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    model = _model(seed=1)
    path = model.save_params(tmp_path / "p.npz")
    original = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(pio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        _model(seed=2).save_params(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]  # no temp file left behind
    monkeypatch.undo()
    fresh = _model(seed=2)
    fresh.load_params(path)
    np.testing.assert_array_equal(fresh.params["layer00_conv/k"], model.params["layer00_conv/k"])


def test_save_creates_folders(tmp_path):
    path = _model().save_params(tmp_path / "a" / "b" / "params.npz")
    assert path.exists()


def test_saved_file_gets_the_usual_permissions(tmp_path):
    """The temp file behind the atomic save is 0600; the saved file follows the umask."""
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = _model().save_params(tmp_path / "p.npz")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
