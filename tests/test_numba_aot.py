"""The numba-aot backend: the numba kernels compiled ahead of time.

Its kernels are the JIT backend's functions compiled by pycc for this CPU, so
every result must equal the ``numba`` backend's bit for bit (the contract tests
in test_kernels.py also run it against the float64 references). Its argument
checks must stop what pycc's exports would not (a wrong dtype or layout reads
the wrong memory), a stale or foreign build must refuse to load, and a process
using it must not import numba or LLVM at all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastcnn import CnnModel, runtime
from fastcnn import kernels as K
from fastcnn.datasets.base import ArrayDataset
from fastcnn.kernels import aot

ROOT = Path(__file__).resolve().parents[1]
BUILT = K.backend_available("numba-aot")
needs_build = pytest.mark.skipif(not BUILT, reason="numba-aot not built (make aot)")

# (x shape, kernel shape, stride, padding): one channel, several channels, even and
# non-square kernels, stride 2 (the im2col path), batch of one, 8+ channels (SIMD transposes)
CASES = [
    ((3, 12, 11, 1), (5, 5, 1, 7), 1, "valid"),
    ((2, 9, 10, 3), (3, 3, 3, 6), 1, "same"),
    ((1, 10, 9, 4), (2, 3, 4, 5), 1, "same"),
    ((2, 11, 12, 2), (3, 2, 2, 3), 2, "same"),
    ((2, 16, 17, 9), (3, 3, 9, 12), 1, "same"),
]


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_every_kernel_the_host_calls_is_in_the_export_table():
    source = (ROOT / "fastcnn" / "kernels" / "numba_host.py").read_text()
    called = set(re.findall(r"self\.k\.(\w+)\(", source))
    assert called, "no kernel calls found in numba_host.py"
    hosted = set(aot.KERNELS) - set(aot.KERNEL_MODULES)  # the rest are batch norm's (aot_norm)
    assert called == hosted, f"host calls {called ^ hosted} not matched by the table"


def test_signatures_spell_contiguous_arrays_and_scalars():
    assert aot.signature("_max_fwd", "f4") == "void(f4[:, :, :, ::1], i8, i8, i8, i8, f4[:, :, :, ::1])"
    assert aot.signature("_sum_batch", "f8") == "f8[::1](f8[:, ::1])"
    assert aot.signature("_tap_offsets", None) == "i8[::1](i8, i8, i8, i8, i8)"
    assert aot.signature("_adam", "f4").endswith("f8, f8, f8, f8)")
    builds = aot.builds()
    assert {("_tap_offsets", None), ("_conv_fwd", "f4"), ("_conv_fwd", "f8")} <= set(builds)


@needs_build
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x{}-k{}-s{}-{}".format(*c))
def test_conv_equals_the_jit_backend_bit_for_bit(case, dtype):
    x_shape, k_shape, stride, pad = case
    x, k, b = _rand(x_shape, dtype, 1), _rand(k_shape, dtype, 2) * 0.3, _rand(k_shape[3], dtype, 3)
    y = {name: K.conv2d_forward(x, k, b, stride, pad, backend=name) for name in ("numba", "numba-aot")}
    assert np.array_equal(y["numba"], y["numba-aot"])
    g_y = _rand(y["numba"].shape, dtype, 4)
    grads = {name: K.conv2d_backward(g_y, x, k, stride, pad, backend=name) for name in ("numba", "numba-aot")}
    for jit, ahead, what in zip(grads["numba"], grads["numba-aot"], ("g_x", "g_k", "g_b"), strict=True):
        assert np.array_equal(jit, ahead), what
    # and it is a real convolution: the float64 im2col path agrees to rounding
    ref = K.conv2d_forward(x.astype(np.float64), k.astype(np.float64), b.astype(np.float64), stride, pad,
                           backend="numpy")
    np.testing.assert_allclose(y["numba-aot"], ref, rtol=1e-4, atol=1e-4)


@needs_build
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fwd, bwd, size, stride", [
    (K.max_pool_forward, K.max_pool_backward, 2, None),
    (K.max_pool_forward, K.max_pool_backward, 3, 2),
    (K.avg_pool_forward, K.avg_pool_backward, 3, None),
])
def test_pooling_equals_the_jit_backend_bit_for_bit(fwd, bwd, size, stride, dtype):
    x = _rand((2, 12, 13, 5), dtype, 5)
    y = {name: fwd(x, size, stride, backend=name) for name in ("numba", "numba-aot")}
    assert np.array_equal(y["numba"], y["numba-aot"])
    g_y = _rand(y["numba"].shape, dtype, 6)
    g_x = {name: bwd(g_y, x, size, stride, backend=name) for name in ("numba", "numba-aot")}
    assert np.array_equal(g_x["numba"], g_x["numba-aot"])


def _digits(n=200) -> ArrayDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    xs = (digits.images[:n] / 16.0).astype(np.float32)[..., None]
    ys = np.eye(10, dtype=np.float32)[digits.target[:n]]
    return ArrayDataset("digits", xs, ys, "select", [str(i) for i in range(10)], seed=5)


NET = [["conv", {"ksize": 3, "chn": 8}], ["max", {"stride": 2}],
       ["conv", {"ksize": [2, 3], "chn": 6, "stride": 2}], ["avg", {"ksize": 2, "stride": 1}], 16]


@needs_build
def test_training_gives_the_jit_backends_parameters_bit_for_bit():
    params = {}
    for name in ("numba", "numba-aot"):
        model = CnnModel("aot", _digits(), None, NET, backend=name, seed=3)
        model.train(epoch_count=2, batch_size=32, learning_rate=0.003, progress=False)
        params[name] = model.params
    fresh = CnnModel("aot", _digits(), None, NET, backend="numba-aot", seed=3).params
    for key, value in params["numba"].items():
        assert np.array_equal(value, params["numba-aot"][key]), key
    assert any(not np.array_equal(fresh[key], params["numba-aot"][key]) for key in fresh)


@needs_build
def test_kernel_arguments_are_checked_before_the_compiled_code_runs():
    kernels = aot.load(lambda: 1)
    x = np.zeros((1, 4, 4, 2), np.float32)
    y = np.zeros((1, 2, 2, 2), np.float32)
    with pytest.raises(TypeError, match=r"_max_fwd: argument 5 has dtype float64, expected float32"):
        kernels._max_fwd(x, 2, 2, 2, 2, y.astype(np.float64))
    with pytest.raises(TypeError, match=r"_max_fwd: argument 0 must be a C-contiguous 4-d array"):
        kernels._max_fwd(np.zeros((1, 4, 4, 4), np.float32)[..., ::2], 2, 2, 2, 2, y)
    with pytest.raises(TypeError, match=r"_max_fwd: argument 0 must be a C-contiguous 4-d array, got list"):
        kernels._max_fwd([0.0], 2, 2, 2, 2, y)
    with pytest.raises(TypeError, match=r"_relu takes 2 arguments, got 1"):
        kernels._relu(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"_sum_batch: not built for dtype float16"):
        kernels._sum_batch(np.zeros((2, 3), np.float16))
    with pytest.raises(TypeError, match=r"_conv_fwd_blocked: argument 1 has dtype int32, expected int64"):
        kernels._conv_fwd_blocked(x, np.zeros(4, np.int32), np.zeros((5, 5), np.float32),
                                  np.zeros(5, np.float32), 3, 3, 1, 1, y, True, True)
    kernels._max_fwd(np.arange(32, dtype=np.float32).reshape(1, 4, 4, 2), 2, 2, 2, 2, y)  # valid calls run
    assert y[0, 0, 0].tolist() == [10.0, 11.0]


def test_missing_build_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(aot, "BUILD_INFO", tmp_path / "absent.json")
    with pytest.raises(ImportError, match=r"not built; build it with `python -m fastcnn.kernels.aot_build`"):
        aot.load(lambda: 1)


REAL_INFO = aot.BUILD_INFO  # the build `make aot` made (tests below point BUILD_INFO elsewhere)


def _real_files() -> list[Path]:
    return [p for p in REAL_INFO.parent.glob(f"{aot.MODULE}.*") if p.is_file()]


def _fake_build(tmp_path, **changes) -> Path:
    """A build folder whose info is the real one with ``changes``, and a dummy module file."""
    module = tmp_path / f"{aot.MODULE}.cpython-test.so"
    module.write_bytes(b"not a module")
    info = {"cpu": "testcpu", "features": [], "wide": False, "source_sha256": aot.source_digest(),
            "module": module.name, "module_sha256": aot.file_digest(module)}
    info.update(changes)
    path = tmp_path / f"{aot.MODULE}.json"
    path.write_text(json.dumps(info))
    return path


def _copy_real_build(folder: Path, features=None):
    """A stand-in for the minute-long rebuild: copy the real build into ``folder``."""

    def rebuild():
        for path in _real_files():
            (folder / path.name).write_bytes(path.read_bytes())
        if features is not None:
            info = json.loads(REAL_INFO.read_text())
            info["features"] = features
            (folder / REAL_INFO.name).write_text(json.dumps(info))
        rebuild.calls += 1

    rebuild.calls = 0
    return rebuild


@needs_build
@pytest.mark.parametrize("damage", ["stale", "foreign", "unreadable info", "truncated module", "no info"])
def test_an_unusable_build_is_discarded_with_one_warning_and_rebuilt(tmp_path, monkeypatch, damage):
    if damage == "stale":
        info = _fake_build(tmp_path, source_sha256="0" * 64)
        said = "stale (built from other kernel sources)"
    elif damage == "foreign":
        info = _fake_build(tmp_path, features=["avx2", "avx512f"])
        monkeypatch.setattr(aot, "_cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
        said = "built for a testcpu CPU with avx512f, which this CPU lacks"
    elif damage == "unreadable info":
        info = _fake_build(tmp_path)
        info.write_text('{"cpu": "testc')
        said = "damaged (unreadable build info"
    else:
        _copy_real_build(tmp_path)()
        info = tmp_path / REAL_INFO.name
        module = next(p for p in tmp_path.iterdir() if p.suffix == ".so")
        if damage == "truncated module":
            module.write_bytes(module.read_bytes()[:4096])  # importing it would die of SIGBUS
            said = "is not the file that was built: truncated or overwritten"
        else:
            info.unlink()
            said = "incomplete (a build info file is missing)"
    monkeypatch.setattr(aot, "BUILD_INFO", info)
    rebuild = _copy_real_build(tmp_path, features=["avx2", "fma"] if damage == "foreign" else None)
    with pytest.warns(RuntimeWarning) as caught:
        kernels = aot.load(lambda: 1, rebuild=rebuild)
    messages = [str(w.message) for w in caught if "numba-aot build" in str(w.message)]
    assert len(messages) == 1 and said in messages[0] and "rebuilding" in messages[0]
    assert rebuild.calls == 1
    assert not (tmp_path / f"{aot.MODULE}.cpython-test.so").exists()  # the damaged files are gone
    x = _rand((2, 6, 6, 3), np.float32, 0)
    y = np.empty((2, 3, 3, 3), np.float32)
    kernels._max_fwd(x, 2, 2, 2, 2, y)
    np.testing.assert_array_equal(y, K.max_pool_forward(x, 2, backend="numpy"))


def test_a_failed_rebuild_says_what_was_wrong_and_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(aot, "BUILD_INFO", _fake_build(tmp_path, source_sha256="0" * 64))

    def no_compiler():
        raise ImportError("rebuilding failed: no C compiler")

    with pytest.warns(RuntimeWarning, match="stale"), pytest.raises(
        ImportError, match=r"was stale \(built from other kernel sources\), and rebuilding it failed "
                           r"\(rebuilding failed: no C compiler\)\. Build it by hand with `python -m"):
        aot.load(lambda: 1, rebuild=no_compiler)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []  # nothing half-built


_TINY_MODEL = """
import os, sys
import numpy as np
from fastcnn import CnnModel
from fastcnn.datasets.base import ArrayDataset
xs = np.random.default_rng(0).random((40, 10, 10, 1), dtype=np.float32)
ys = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
ds = ArrayDataset("tiny", xs, ys, "select", ["a", "b", "c"])
model = CnnModel("tiny", ds, None, [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8],
                 backend="numba-aot", seed=1)
"""


def _run_tiny_model(then: str) -> str:
    """Build a tiny numba-aot model in a fresh interpreter, run ``then``; its last line of output."""
    code = _TINY_MODEL + textwrap.dedent(then)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         timeout=120)
    return out.stdout.strip().splitlines()[-1]


@needs_build
def test_a_process_on_numba_aot_never_imports_numba_or_llvm():
    last = _run_tiny_model(
        """
        loss, _, grads = model.compute_step(xs[:20], ys[:20])
        model.optimizer.update(model.params, grads)
        assert np.isfinite(loss)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite")))
        """
    )
    assert last == "[]"


def test_an_unbuilt_backend_is_a_clear_error_not_a_crash(tmp_path, monkeypatch, capsys):
    from fastcnn import cli

    monkeypatch.setattr(aot, "BUILD_INFO", tmp_path / "absent.json")
    monkeypatch.delitem(sys.modules, "fastcnn.kernels.numba_aot", raising=False)
    monkeypatch.setattr(K, "_loaded", {name: m for name, m in K._loaded.items() if name != "numba-aot"})
    with pytest.raises(ImportError, match=r"numba-aot backend is not built.*make aot"):
        K.get_backend("numba-aot")
    assert not K.backend_available("numba-aot")
    with pytest.raises(ImportError, match="not built"):  # the kernel functions reach the same loader
        K.conv2d_forward(np.zeros((1, 4, 4, 1), np.float32), np.zeros((3, 3, 1, 2), np.float32),
                         np.zeros(2, np.float32), 1, "valid", backend="numba-aot")
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--backend", "numba-aot", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "numba-aot backend is not built" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing half-written


@needs_build
def test_a_process_on_numba_aot_can_fork_and_keep_training():
    """No OpenMP runtime in the process: unlike the JIT backend's, a forked child trains on."""
    last = _run_tiny_model(
        """
        model.compute_step(xs[:20], ys[:20])
        pid = os.fork()
        if pid == 0:
            loss, _, _ = model.compute_step(xs[20:], ys[20:])
            os._exit(0 if np.isfinite(loss) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert last == "0"


@needs_build
def test_cutting_calls_over_threads_gives_the_same_bits():
    from fastcnn.kernels import numba_aot

    x = _rand((6, 14, 13, 3), np.float32, 7)
    k = _rand((3, 3, 3, 5), np.float32, 8) * 0.3
    b = _rand(5, np.float32, 9)
    g_y = _rand((6, 14, 13, 5), np.float32, 10)

    def everything():
        y = K.conv2d_forward(x, k, b, 1, "same", backend="numba-aot")
        g_x, g_k, g_b = K.conv2d_backward(g_y, x, k, 1, "same", backend="numba-aot")
        _, g_k1, _ = K.conv2d_backward(g_y[..., :1].copy(), x[..., :1].copy(), k[:, :, :1, :1].copy(), 1,
                                       "same", backend="numba-aot", input_grad=False)
        cols = K.ext_regions(x, 3, 2, 2, "same", backend="numba-aot")
        undo = K.undo_ext_regions(cols, x.shape, 3, 2, 2, "same", backend="numba-aot")
        pooled = K.max_pool_forward(x, 2, backend="numba-aot")
        g_pool = K.max_pool_backward(np.ones_like(pooled), x, 2, backend="numba-aot")
        avg = K.avg_pool_backward(np.ones_like(K.avg_pool_forward(x, 3, 2, backend="numba-aot")), x, 3, 2,
                                  backend="numba-aot")
        return [y, g_x, g_k, g_b, g_k1, cols, undo, pooled, g_pool, avg]

    try:
        runtime.set_num_threads(1)
        assert numba_aot.num_threads() == 1
        one = everything()
        runtime.set_num_threads(3)  # more threads than cores: uneven pieces
        assert numba_aot.num_threads() == 3
        three = everything()
    finally:
        runtime.set_num_threads(None)
    for i, (a, c) in enumerate(zip(one, three, strict=True)):
        assert np.array_equal(a, c), f"result {i} differs between 1 and 3 threads"


def test_a_call_is_cut_into_contiguous_blocks_of_the_batch(monkeypatch):
    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)
    calls = []
    kernel = aot.CheckedKernel("_ext_regions", aot.KERNELS["_ext_regions"][0], aot.KERNELS["_ext_regions"][2],
                               {np.dtype(np.float32): lambda *args: calls.append(args)}, lambda: 2)
    x = np.zeros((5, 4, 4, 2), np.float32)
    cols = np.zeros((5 * 6, 8), np.float32)  # 6 rows per image
    kernel(x, 2, 2, 1, 1, 0, 0, 2, 3, cols)

    def address(a):
        return a.__array_interface__["data"][0]

    calls.sort(key=lambda args: address(args[0]))  # the pieces run on two threads, in any order
    assert [(address(a[0]), a[0].shape[0]) for a in calls] == [(address(x), 2), (address(x[2:]), 3)]
    assert [(address(a[9]), a[9].shape[0]) for a in calls] == [(address(cols), 12), (address(cols[12:]), 18)]
    assert all(a[1:9] == (2, 2, 1, 1, 0, 0, 2, 3) for a in calls)
    with pytest.raises(TypeError, match="argument 9 has 31 rows, not a multiple of the batch"):
        kernel(x, 2, 2, 1, 1, 0, 0, 2, 3, np.zeros((31, 8), np.float32))


@needs_build
def test_a_truncated_build_is_rebuilt_for_real_in_a_fresh_process(tmp_path):
    """End to end, with the real build command: a module file cut short (a killed copy, a full
    disk) is found before it is imported, discarded with one warning, rebuilt, and used."""
    _copy_real_build(tmp_path)()
    module = next(p for p in tmp_path.iterdir() if p.suffix == ".so")
    module.write_bytes(module.read_bytes()[: module.stat().st_size // 3])
    code = textwrap.dedent(
        """
        import numpy as np
        from fastcnn import kernels
        x = np.random.default_rng(0).random((3, 8, 9, 4), dtype=np.float32)
        got = kernels.max_pool_forward(x, 2, backend="numba-aot")
        print(np.array_equal(got, kernels.max_pool_forward(x, 2, backend="numpy")))
        """
    )
    env = {**__import__("os").environ, "FASTCNN_AOT_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=600, check=False) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    assert runs[0].stdout.split()[-1] == "True"
    assert runs[0].stderr.count("numba-aot build in") == 1 and "truncated or overwritten" in runs[0].stderr
    assert runs[0].stderr.count("'pycc' module is pending deprecation") == 1  # shown by the build, once
    assert "first use only" not in runs[0].stderr  # the build reports itself, not the JIT's first-run notice
    assert runs[1].returncode == 0 and runs[1].stdout.split()[-1] == "True"
    assert "numba-aot build in" not in runs[1].stderr  # the rebuilt module is whole: a quiet start
    assert json.loads((tmp_path / REAL_INFO.name).read_text())["module_sha256"] == aot.file_digest(module)


@pytest.mark.parametrize("version", ["0.59.0", "0.68.1", "0.68.0rc1"])
def test_the_build_accepts_the_numba_versions_it_is_tested_with(version):
    from fastcnn.kernels import aot_build

    assert aot_build.numba_version_problem(version) is None


@pytest.mark.parametrize("version", ["0.58.1", "0.69.0", "1.0.0", "dev"])
def test_the_build_refuses_other_numba_versions_and_says_why(version):
    from fastcnn.kernels import aot_build

    problem = aot_build.numba_version_problem(version)
    assert problem.startswith(f"numba {version} is not among the versions this build is tested with (0.59 up")
    assert "--any-numba" in problem


def _steps_of_another_thread(call, calls: int) -> int:
    """How many loop steps a second Python thread makes while this one runs ``call`` ``calls``
    times. A step needs the GIL: while ``call`` holds it the other thread waits, and can step
    only at the edges of a call (when the interpreter switches threads between bytecodes)."""
    import threading
    import time

    counter, started, stop = [0], threading.Event(), threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)

    worker = threading.Thread(target=count)
    worker.start()
    started.wait()
    try:
        moved = 0
        for _ in range(calls):
            before = counter[0]
            call()
            moved += counter[0] - before
    finally:
        stop.set()
        worker.join()
    return moved


@needs_build
def test_aot_calls_release_the_gil_so_another_thread_runs_meanwhile():
    """The build compiles its exports to release the GIL (aot_build patches pycc for that), so
    a Python thread runs on while the main thread is inside a kernel. The control, a builtin
    that holds the GIL for as long, shows what a call that keeps it allows: a few steps."""
    kernels = aot.load(lambda: 1)
    x = _rand((64, 96, 96, 8), np.float32, 3)
    y = np.empty((64, 48, 48, 8), np.float32)
    calls = 10
    held = _steps_of_another_thread(lambda: sum(range(3_000_000)), calls)  # ~30 ms, GIL held
    released = _steps_of_another_thread(lambda: [kernels._max_fwd(x, 2, 2, 2, 2, y) for _ in range(8)], calls)
    assert held <= 3 * calls < released, (held, released)


# --------------------------------------------------------------------------
# the build's callees: optimized IR only, and only in a child that exits
# --------------------------------------------------------------------------


def _ir_only_targets():
    import importlib

    from fastcnn.kernels import aot_build

    return [(getattr(importlib.import_module(f"numba.core.{module}"), owner), method, stand_in)
            for module, owner, method, stand_in in aot_build._IR_ONLY]


def test_ir_only_callees_swap_numbas_steps_and_restore_them_even_after_a_failure():
    """Inside the context every step of ``_IR_ONLY`` is its stand-in; after it, even one left by
    an exception, numba's own methods are back (nothing is compiled inside: it would not run)."""
    from fastcnn.kernels import aot_build

    targets = _ir_only_targets()
    plain = [getattr(cls, method) for cls, method, _ in targets]
    with pytest.raises(RuntimeError, match="a failed build"), aot_build._callees_as_ir_only():
        assert [getattr(cls, method) for cls, method, _ in targets] == [s for _, _, s in targets]
        raise RuntimeError("a failed build")
    assert [getattr(cls, method) for cls, method, _ in targets] == plain


def test_ir_only_callees_leave_a_numba_without_one_of_the_steps_alone(monkeypatch):
    """A numba that lacks one of the replaced methods builds the plain way: nothing is swapped."""
    from fastcnn.kernels import aot_build

    targets = _ir_only_targets()
    plain = [getattr(cls, method) for cls, method, _ in targets]
    monkeypatch.setattr(aot_build, "_IR_ONLY", aot_build._IR_ONLY + (("codegen", "JITCodeLibrary",
                                                                       "no_such_step", lambda self: None),))
    with aot_build._callees_as_ir_only():
        assert [getattr(cls, method) for cls, method, _ in targets] == plain


def test_only_a_parts_child_process_builds_with_ir_only_callees(monkeypatch, tmp_path):
    """``build`` compiles every part in a child process (``--part``), which builds with
    ``ir_only`` and exits; the building process itself never compiles, so its JIT stays whole."""
    from fastcnn.kernels import aot_build, numba_safety

    monkeypatch.setattr(numba_safety.COMPILE_NOTICE, "enabled", True)  # the child turns it off
    monkeypatch.setattr(aot_build, "_import_pycc", lambda: None)  # its warning belongs to real builds
    calls = []
    monkeypatch.setattr(aot_build, "build_part", lambda part, output, verbose=False, ir_only=False:
                        calls.append((part, output, ir_only)))
    assert aot_build.main(["--part", "f8", "--output", str(tmp_path), "--any-numba"]) == 0
    assert calls == [("f8", tmp_path, True)] and not numba_safety.COMPILE_NOTICE.enabled

    class Child:  # a part's process that built its module
        returncode = 0

        def __init__(self, part, output_dir, verbose):
            (output_dir / f"{aot.PARTS[part]}.cpython-test.so").write_bytes(part.encode())
            started.append(part)

        def communicate(self):
            return "", None

    started = []
    calls.clear()
    monkeypatch.setattr(aot_build, "_start_part", Child)
    monkeypatch.setattr(aot, "BUILD_INFO", tmp_path / "build" / REAL_INFO.name)
    info = aot_build.build(any_numba=True)
    assert started == list(aot.PARTS) and calls == []
    _, *others = aot.PARTS
    assert info["module"] == f"{aot.MODULE}.cpython-test.so"
    assert [entry["module"] for entry in info["parts"].values()] == [
        f"{aot.MODULE}.{part}.cpython-test.so" for part in others]


def test_a_build_whose_part_cannot_start_stops_the_parts_it_started(monkeypatch, tmp_path):
    """When a part's process cannot start (or the build is interrupted), the parts already
    running are killed and waited for, and the error reaches the caller: no child outlives it."""
    from fastcnn.kernels import aot_build

    events = []

    class Child:
        def __init__(self, part):
            self.part = part

        def kill(self):
            events.append(("kill", self.part))

        def wait(self):
            events.append(("wait", self.part))

    def start(part, output_dir, verbose):
        if part != next(iter(aot.PARTS)):
            raise OSError(f"cannot start the {part} part")
        events.append(("start", part))
        return Child(part)

    monkeypatch.setattr(aot_build, "_start_part", start)
    monkeypatch.setattr(aot_build, "_import_pycc", lambda: None)
    monkeypatch.setattr(aot, "BUILD_INFO", tmp_path / "build" / REAL_INFO.name)
    first, second = list(aot.PARTS)[:2]
    with pytest.raises(OSError, match=f"cannot start the {second} part"):
        aot_build.build(any_numba=True)
    assert events == [("start", first), ("kill", first), ("wait", first)]
    assert not aot.BUILD_INFO.exists()
