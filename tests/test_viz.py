"""Every drawing writes a valid, non-empty PNG and returns its path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fastcnn import viz

RNG = np.random.default_rng(0)


def assert_png(path, expected):
    assert path == expected and path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 50 and img.height > 20


def test_draw_kernels(tmp_path):
    kernels = [RNG.normal(size=(3, 3, 1, 8)), RNG.normal(size=(5, 5, 8, 4))]
    out = tmp_path / "deep" / "folder" / "kernels.png"
    assert_png(viz.draw_kernels(kernels, out), out)


def test_draw_kernels_rejects_bad_rank(tmp_path):
    with pytest.raises(ValueError, match=r"kernels\[0\] must be \[kh, kw, xchn, ychn\]"):
        viz.draw_kernels([np.zeros((3, 3))], tmp_path / "k.png")


def test_draw_feature_maps(tmp_path):
    maps = [("conv", RNG.normal(size=(3, 8, 8, 4))), ("max", RNG.normal(size=(3, 4, 4, 4)))]
    assert_png(viz.draw_feature_maps(maps, tmp_path / "maps.png"), tmp_path / "maps.png")
    with pytest.raises(ValueError, match="'conv' must be"):
        viz.draw_feature_maps([("conv", np.zeros((8, 8)))], tmp_path / "bad.png")


@pytest.mark.parametrize("xchn", [1, 3])
def test_draw_filter_grid(tmp_path, xchn):
    out = tmp_path / f"grid{xchn}.png"
    assert_png(viz.draw_filter_grid(RNG.normal(size=(5, 5, xchn, 30)), out, title="after"), out)


def test_apply_filters_to_photo_default_photo(tmp_path):
    kernel = RNG.normal(size=(3, 3, 1, 4)).astype(np.float32)
    out = tmp_path / "photo.png"
    assert_png(viz.apply_filters_to_photo(kernel, out), out)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_apply_filters_to_given_photo(tmp_path, backend):
    photo = RNG.integers(0, 255, (20, 30, 3))
    kernel = RNG.normal(size=(3, 3, 3, 2))
    out = tmp_path / "photo.png"
    assert_png(viz.apply_filters_to_photo(kernel, out, photo=photo, backend=backend), out)


def test_plot_history_plain_and_pairs(tmp_path):
    plain = {"epochs": [1, 2, 3], "costs": [1.0, 0.6, 0.4], "train_acc": [0.5, 0.7, 0.8],
             "valid_acc": [0.4, 0.6, 0.7]}
    assert_png(viz.plot_history(plain, tmp_path / "h.png"), tmp_path / "h.png")

    class Pairs:
        def to_dict(self):
            return {"epochs": [1, 2], "costs": [30.7, 30.0], "train_acc": [(0.9, 0.5), (0.95, 0.6)],
                    "valid_acc": [(0.8, 0.4), (0.85, 0.5)]}

    assert_png(viz.plot_history(Pairs(), tmp_path / "dual.png"), tmp_path / "dual.png")


def test_plot_history_names_missing_keys(tmp_path):
    with pytest.raises(ValueError, match="history lacks costs, valid_acc"):
        viz.plot_history({"epochs": [1], "train_acc": [0.1]}, tmp_path / "h.png")


def test_draw_samples_select_and_dual(tmp_path):
    xs = RNG.random((5, 8, 8, 1))
    answers = np.eye(3)[[0, 1, 2, 0, 1]]
    out = viz.draw_samples(xs, answers[::-1], answers, ["a", "b", "c"], tmp_path / "s.png")
    assert_png(out, tmp_path / "s.png")

    rgb = RNG.random((2, 6, 6, 3))
    dual = np.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0]], dtype=float)
    names = (["amazon", "webcam"], ["bike", "cup", "mug"])
    assert_png(viz.draw_samples(rgb, dual, dual, names, tmp_path / "d.png"), tmp_path / "d.png")
