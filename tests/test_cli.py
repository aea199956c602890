"""The command line: a tiny training run writes its files; bad arguments exit 2."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcnn import bench, cli

TINY = '[["conv", {"ksize": 3, "chn": 2}], ["max", {"stride": 2}]]'
TRAIN_FILES = {
    "report.txt", "params.npz", "history.json", "history.png", "filters_before.png",
    "filters_after.png", "filters_on_photo.png", "samples.png",
}


def test_train_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--epochs", "1", "--hconfig", TINY, "--backend", "numpy", "--report", "1",
                     "--show", "2", "--batch-size", "64", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= TRAIN_FILES
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "test report: accuracy" in printed
    report = (out / "report.txt").read_text()
    assert "Model digits train started" in report and "estimated distribution [" in report
    summary = json.loads((out / "history.json").read_text())
    assert summary["history"]["epochs"] == [1] and 0 <= summary["test_acc"] <= 1
    with np.load(out / "params.npz") as params:
        assert len(params.files) >= 2
    for name in TRAIN_FILES - {"report.txt", "params.npz", "history.json"}:
        with Image.open(out / name) as img:
            assert img.format == "PNG"


@pytest.mark.parametrize("show", ["0", "1"])
def test_train_show_maps_and_hconfig_file(tmp_path, show, capsys):
    config = tmp_path / "net.json"
    config.write_text(TINY)
    out = tmp_path / "run"
    cli.main(["train", "--epochs", "0", "--hconfig", str(config), "--backend", "numpy", "--show", show,
              "--show-maps", "--out", str(out)])
    assert {p.name for p in out.iterdir()} >= {"kernels.png", "feature_maps.png"}
    assert "kernels.png, feature_maps.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--epochs", "-1"], "--epochs: expected an integer >= 0"),
        (["train", "--dataset", "cifar"], "--dataset: invalid choice: 'cifar'"),
        (["train", "--backend", "gpu"], "--backend: invalid choice"),
        (["train", "--learning-rate", "0"], "--learning-rate: expected a positive number"),
        (["train", "--resolution", "big"], "--resolution: expected SIZE or HEIGHTxWIDTH"),
        (["train", "--model", "resnet"], "--model: unknown preset 'resnet'; presets: digits"),
        (["train", "--hconfig", "[conv"], "--hconfig: not valid JSON"),
        (["train", "--hconfig", '{"a": 1}'], "--hconfig must be a JSON list"),
        (["train", "--hconfig", "missing.json"], "--hconfig: file missing.json does not exist"),
        (["train", "--hconfig", '[["bogus", {}]]'], "bogus"),
        (["train", "--dataset", "mnist"], "--dataset mnist needs --data-path"),
        (["train", "--dataset", "flowers", "--data-path", "/nonexistent/flowers"], "/nonexistent/flowers"),
        (["train", "--model", "digits", "--hconfig", "[]"], "not allowed with argument"),
        (["bench", "--backends", "numba,cuda"], "--backends: unknown cuda"),
        (["bench", "--repeat", "0"], "--repeat: expected a positive integer"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "required: command"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, *(["--out", str(tmp_path / "run")] if argv[:1] == ["train"] else [])])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastcnn: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err


def test_bench_quick_prints_table(capsys):
    assert cli.main(["bench", "--quick", "--backends", "numba,numpy,better"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    head = "| workload | shape | numba ms | numpy ms | better ms | numpy / numba | better / numba |"
    assert table[0] == head
    assert len(table) == 2 + len(bench.WORKLOADS)
    assert "conv fwd (SimpleConvNet)" in out


def test_format_table_marks_scaled_times():
    rows = [{"workload": "w", "shape": "s", "times": {"numba": (0.001, False), "adhoc": (0.5, True)}}]
    text = bench.format_table(rows, ["numba", "adhoc"])
    assert text.splitlines()[-1] == "| w | s | 1.00 | 500.00* | 500.0x |"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "fastcnn", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "train" in result.stdout and "bench" in result.stdout


def test_diverged_training_exits_1_with_its_message(tmp_path, capsys, monkeypatch):
    from fastcnn import CnnModel, TrainingDiverged

    def diverge(self, *args, **kwargs):
        raise TrainingDiverged("Model digits: training diverged at epoch 1: cost is nan")

    monkeypatch.setattr(CnnModel, "exec_all", diverge)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--hconfig", TINY, "--backend", "numpy", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    expected = "fastcnn: error: Model digits: training diverged at epoch 1: cost is nan\n"
    assert capsys.readouterr().err == expected


def _stream_defaults(tree):
    """``(function, default)`` for every parameter whose default is ``sys.stdout``/``sys.stderr``."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                if (isinstance(default, ast.Attribute) and default.attr in ("stdout", "stderr")
                        and isinstance(default.value, ast.Name) and default.value.id == "sys"):
                    yield getattr(node, "name", "<lambda>"), f"sys.{default.attr}"


def test_no_function_binds_a_stream_at_import():
    """A default of ``sys.stdout`` is the stream of import time; under a capturing caller (a test,
    a notebook) it is closed later and printing fails. Functions take ``None`` and look it up."""
    import ast

    import fastcnn

    package = Path(fastcnn.__file__).parent
    found = [f"{path.relative_to(package)}: {name}({default})"
             for path in sorted(package.rglob("*.py"))
             for name, default in _stream_defaults(ast.parse(path.read_text()))]
    assert found == []
    assert list(_stream_defaults(ast.parse("def f(out=sys.stdout): pass"))) == [("f", "sys.stdout")]


def test_compile_builds_prints_to_the_stream_of_the_call(monkeypatch):
    """``compile_builds`` looks up ``sys.stdout`` when called, not when imported."""
    import io

    from fastcnn.kernels import jit_warm

    class Kernel:
        def compile(self, types):
            pass

    monkeypatch.setattr(jit_warm, "dispatchers", lambda: {"_relu": Kernel()})
    monkeypatch.setattr(jit_warm, "argument_types", lambda kernel, code: ())
    monkeypatch.setattr(jit_warm, "cache_folder", lambda kernels: Path("."))
    monkeypatch.setattr(jit_warm.jit_ready, "locked", lambda folder: contextlib.nullcontext())
    monkeypatch.setattr(jit_warm.jit_ready, "read", lambda folder, ident: set())
    monkeypatch.setattr(jit_warm.jit_ready, "add", lambda folder, ident, names: set(names))
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    assert jit_warm.compile_builds(["_relu:f4"]) == ["_relu:f4"]
    assert stream.getvalue().startswith("_relu:f4 ")
