"""Every chapter 8-9 preset trains one step on every backend (``CnnModel``) and through
``fastcnn train``; ``fastcnn convert`` takes a preset's own input shape; the book's chapter 8
comparison script and the preset benchmark script run (tiny synthetic runs).

The flower presets need their book input size (64x64x3, inception 96x96x3: their last
average pools and strided residual branches do not fit smaller maps), so the pure-Python
``adhoc`` backend (12-38 s per image here) trains them, and DeepConvNet at 28x28x1, only
in the ``slow`` sweep (``pytest -m slow``); the quick run trains DeepConvNet on 8x8x1
(the size of the digits), which still has every one of its layer types.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcnn import CnnModel, cli
from fastcnn.datasets.base import ArrayDataset
from fastcnn.kernels import backend_available
from fastcnn.zoo import PRESET_INPUTS, get_preset

ROOT = Path(__file__).resolve().parents[1]
#: the presets issue 13 added, with the input shape each trains on here
NEW_PRESETS = {"deepconvnet": (28, 28, 1), **{name: PRESET_INPUTS[name] for name in (
    "inception_flower", "inception_flower_la", "plain_flower", "residual_flower", "bottleneck_flower")}}
QUICK_BACKENDS = ("numba", "numba-aot", "numpy", "better")


def _dataset(shape, classes: int = 5, n: int = 4, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    xs = rng.random((n, *shape), dtype=np.float32)
    ys = np.eye(classes, dtype=np.float32)[np.arange(n) % classes]
    return ArrayDataset("synthetic", xs, ys, "select", [f"c{i}" for i in range(classes)], split=(1.0, 0.0))


def _skip_unavailable(backend: str) -> None:
    if not backend_available(backend):
        pytest.skip(f"backend {backend!r} not available here (numba-aot: make aot)")


def _one_step(preset: str, shape, backend: str, batch: int) -> None:
    ds = _dataset(shape, n=3)
    model = CnnModel(preset, ds, None, get_preset(preset), backend=backend, seed=3)
    x, y = model.dataset.tr_xs[:batch], model.dataset.tr_ys[:batch]
    before = {k: v.copy() for k, v in model.params.items()}
    loss, _, grads = model.compute_step(x, y)
    assert np.isfinite(loss), f"{preset} on {backend}: loss {loss}"
    bad = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
    assert not bad, f"{preset} on {backend}: non-finite gradients of {bad}"
    model.optimizer.update(model.params, grads)
    unchanged = [k for k in grads if np.array_equal(model.params[k], before[k])]
    assert not unchanged, f"{preset} on {backend}: one step left {unchanged} unchanged"
    assert np.all(np.isfinite(model.predict(x)))


@pytest.mark.parametrize("backend", QUICK_BACKENDS)
@pytest.mark.parametrize("preset", list(NEW_PRESETS))
def test_preset_trains_one_step(preset, backend):
    _skip_unavailable(backend)
    _one_step(preset, NEW_PRESETS[preset], backend, batch=1 if backend == "better" else 2)


def test_deepconvnet_trains_on_adhoc_small():
    """The seven-loop backend through every DeepConvNet layer type (convs with pads 1 and 2, max
    pools, dropout, the output marker) on 8x8x1 (28x28x1 in the slow sweep)."""
    _one_step("deepconvnet", (8, 8, 1), "adhoc", batch=1)


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(NEW_PRESETS))
def test_preset_trains_one_step_on_adhoc(preset):
    _one_step(preset, NEW_PRESETS[preset], "adhoc", batch=1)


# -- fastcnn train -------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for prefix, n in (("train", 24), ("t10k", 8)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
    return root


def _flowers_folder(root: Path) -> Path:
    for i, name in enumerate(("daisy", "dandelion", "rose", "sunflower", "tulip")):
        (root / name).mkdir(parents=True)
        for j in range(4):
            Image.new("RGB", (10, 8), (40 * i, 50 * j, 120)).save(root / name / f"{j}.png")
    return root


#: preset -> the backend its command-line run uses (the cheap ones, in turn)
CLI_BACKENDS = dict(zip(NEW_PRESETS, ("numba", "numba-aot", "numpy", "numba", "numba-aot", "numpy"),
                        strict=True))


@pytest.mark.parametrize("preset", list(NEW_PRESETS))
def test_preset_trains_through_the_command_line(preset, tmp_path, capsys):
    backend = CLI_BACKENDS[preset]
    _skip_unavailable(backend)
    if preset == "deepconvnet":
        data = ["--dataset", "mnist", "--data-path", str(_mnist_folder(tmp_path / "mnist")), "--limit", "16"]
    else:
        size = NEW_PRESETS[preset][0]
        data = ["--dataset", "flowers", "--data-path", str(_flowers_folder(tmp_path / "flowers")),
                "--resolution", str(size)]
    out = tmp_path / "run"
    code = cli.main(["train", "--model", preset, *data, "--backend", backend, "--epochs", "1",
                     "--batch-size", "4", "--report", "1", "--show", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"Model {preset} train started" in printed and "test report: accuracy" in printed
    with np.load(out / "params.npz") as params:
        assert len(params.files) > 4


# -- fastcnn convert: the preset's own input shape ------------------------------------------------


def test_convert_takes_the_presets_input_shape(tmp_path, capsys):
    """No --input-shape / --classes: residual_flower is built for 64x64x3 and 5 classes, as
    ``fastcnn structure`` builds it."""
    ds = _dataset((64, 64, 3))
    model = CnnModel("rf", ds, None, get_preset("residual_flower"), backend="numpy", seed=2)
    source = model.save_params(tmp_path / "rf.npz")
    out = tmp_path / "copy.npz"
    assert cli.main(["convert", "--preset", "residual_flower", "--from-params", str(source),
                     "--out", str(out)]) == 0
    with np.load(source) as a, np.load(out) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    with pytest.raises(SystemExit) as info:  # an explicit shape still wins, and is checked against the file
        cli.main(["convert", "--preset", "residual_flower", "--from-params", str(source), "--out",
                  str(tmp_path / "bad.npz"), "--classes", "7"])
    assert info.value.code == 2 and str(source) in capsys.readouterr().err


# -- the benchmark scripts ----------------------------------------------------------------------------


def _script(name: str):
    """Import ``benchmarks/<name>.py`` (the folder is not a package; its siblings import each other)."""
    folder = str(ROOT / "benchmarks")
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ch8_compare_runs_a_tiny_synthetic_comparison(capsys):
    ch8 = _script("ch8_compare")
    assert ch8.main(["--images", "20", "--epochs", "1", "--backend", "numba"]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| flowers_cnn_")]
    assert [row.split(" | ")[0] for row in rows] == [f"| flowers_cnn_{i}" for i in range(1, 5)]
    for row, book in zip(rows, (777, 823, 890, 688), strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == str(book) and float(cells[3]) >= 0 and 0 <= float(cells[5]) <= 1
    assert "only the seconds compare" in printed


def test_preset_steps_script_prints_its_table(capsys):
    steps = _script("preset_steps")
    assert steps.main(["--workloads", "flowers_cnn_4", "--backends", "numba,numpy", "--rounds", "1",
                       "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("CPU: ")
    (row,) = [line for line in printed.splitlines() if line.startswith("| flowers")]
    assert row.startswith("| flowers_cnn_4-n10-96x96x3 | ") and row.count("|") == 7
    # which workloads get a PyTorch row: the twin refuses batch norm, noise and composites by name
    assert steps.twin_problem("deepconvnet-n100-28x28x1") is None
    assert steps.twin_problem("flowers_cnn_2-n10-96x96x3") is None
    assert "('batch_normal'" in steps.twin_problem("flowers_cnn_4-n10-96x96x3")
    assert "('noise'" in steps.twin_problem("flowers_cnn_3-n10-96x96x3")
    assert "('custom'" in steps.twin_problem("residual_flower-n10-64x64x3")


def test_structure_of_deepconvnet_places_the_output_layer_at_its_marker(capsys):
    """``fastcnn structure`` puts the output layer where ``['output']`` is, as ``CnnModel`` does."""
    assert cli.main(["structure", "--model", "deepconvnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == ["12: full, [50]=>[10] pm:50x10+10=510", "13: dropout, [10]=>[10]",
                          "Total parameter count: 123552"]
