"""``fastcnn.runtime``: importing fastcnn changes nothing; the process policy is applied once,
by training and the command, and not at all when switched off; one thread count for every
backend; the BLAS limit enters threadpoolctl once however deeply it is nested.

What a process does on import or on its first training step can only be seen in a
fresh process: those tests run a child interpreter (without ``OMP_WAIT_POLICY`` in its
environment) that counts every ``mallopt`` call through ``ctypes``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from fastcnn import CnnModel, cli, runtime
from fastcnn.datasets.base import ArrayDataset
from fastcnn.kernels import backend_available, workers

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux")
#: what importing threadpoolctl (the BLAS limit's first use, in a model's first step) sets itself
THREADPOOLCTL_ENV = {"KMP_DUPLICATE_LIB_OK": "True"}

#: run first in every child: count mallopt calls made through ctypes, keep the environment as it was
CHILD_PRELUDE = textwrap.dedent(
    """
    import ctypes, json, os
    MALLOPT = []

    class CountingCDLL(ctypes.CDLL):
        def __getattr__(self, name):
            func = super().__getattr__(name)
            if name != "mallopt":
                return func

            def counted(*args):
                MALLOPT.append(args)
                return func(*args)

            setattr(self, name, counted)
            return counted

    ctypes.CDLL = CountingCDLL
    BEFORE = dict(os.environ)

    def tiny_model(backend="numba"):
        import numpy as np
        from fastcnn import CnnModel
        from fastcnn.datasets.base import ArrayDataset

        rng = np.random.default_rng(0)
        xs = rng.random((40, 8, 8, 1), dtype=np.float32)
        ys = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
        ds = ArrayDataset("tiny", xs, ys, "select", ["a", "b", "c"])
        return CnnModel("tiny", ds, None, [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8],
                        backend=backend, seed=1)

    def report(**extra):
        from fastcnn import runtime
        keys = set(BEFORE) | set(os.environ)
        changed = {k: os.environ.get(k) for k in keys if BEFORE.get(k) != os.environ.get(k)}
        out = dict(policy=runtime.policy().__dict__, mallopt=len(MALLOPT), env_changed=changed, **extra)
        print(json.dumps(out))
    """
)


def run_child(code: str, env: dict | None = None) -> dict:
    """Run the prelude then ``code`` in a fresh interpreter; the JSON its ``report()`` printed."""
    # without what this process's policy or an earlier test's threadpoolctl import may have set
    child_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", *THREADPOOLCTL_ENV)}
    child_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, env=child_env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def default_threads():
    """The test may set the thread count; afterwards it is the default again."""
    yield
    runtime.set_num_threads(None)


def tiny_dataset() -> ArrayDataset:
    rng = np.random.default_rng(0)
    xs = rng.random((40, 8, 8, 1), dtype=np.float32)
    ys = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    return ArrayDataset("tiny", xs, ys, "select", ["a", "b", "c"])


# --------------------------------------------------------------------------
# the process policy
# --------------------------------------------------------------------------


def test_importing_fastcnn_and_building_a_model_changes_nothing():
    out = run_child(
        """
        import fastcnn
        after_import = dict(os.environ) == BEFORE
        model = tiny_model("numba")
        after_model = dict(os.environ) == BEFORE
        model.compute_step(model.dataset.tr_xs[:8], model.dataset.tr_ys[:8])  # the numba kernels run
        report(after_import=after_import, after_model=after_model)
        """
    )
    assert out["after_import"], "import fastcnn changed os.environ"
    assert out["after_model"], "building a CnnModel changed os.environ"
    assert out["env_changed"] == THREADPOOLCTL_ENV  # threadpoolctl's own, on its import (docs/runtime.md)
    assert out["mallopt"] == 0
    assert out["policy"] == {"enabled": True, "applied": False, "omp_wait_policy": None,
                             "retain_freed_buffers": False}


OMP = {"NUMBA_THREADING_LAYER": "omp"}  # numba on GNU OpenMP: the wait policy matters


def test_apply_policy_applies_once_and_reports_it():
    out = run_child(
        """
        from fastcnn import runtime
        first = runtime.apply_policy()
        calls = len(MALLOPT)
        second = runtime.apply_policy()
        report(first_calls=calls, same=first == second == runtime.policy())
        """,
        env=OMP,
    )
    assert out["same"]
    assert out["policy"] == {"enabled": True, "applied": True, "omp_wait_policy": "PASSIVE",
                             "retain_freed_buffers": GLIBC}
    assert out["env_changed"] == {"OMP_WAIT_POLICY": "PASSIVE"}  # (no model ran: threadpoolctl not imported)
    assert out["first_calls"] == out["mallopt"] == (2 if GLIBC else 0)  # twice applied, called once


def test_an_omp_wait_policy_in_the_environment_wins():
    out = run_child("from fastcnn import runtime\nruntime.apply_policy()\nreport()\n",
                    env={"OMP_WAIT_POLICY": "ACTIVE", **OMP})
    assert out["policy"]["applied"] and out["policy"]["omp_wait_policy"] is None
    assert out["env_changed"] == {}


@pytest.mark.skipif(not runtime.tbb_library_paths(), reason="no TBB library here: numba would use OpenMP")
def test_on_tbb_the_policy_leaves_openmp_alone():
    """numba runs on TBB here: OMP_WAIT_POLICY would only change other OpenMP users (PyTorch)."""
    out = run_child("from fastcnn import runtime\nruntime.apply_policy()\nreport()\n")
    assert out["policy"]["applied"] and out["policy"]["omp_wait_policy"] is None
    assert out["env_changed"] == {}
    assert out["mallopt"] == (2 if GLIBC else 0)


@pytest.mark.parametrize(("layer", "uses_openmp"), [("omp", True), ("tbb", False), ("workqueue", False),
                                                    ("safe", False)])
def test_which_threading_layers_make_numba_use_openmp(monkeypatch, layer, uses_openmp):
    monkeypatch.setenv("NUMBA_THREADING_LAYER", layer)
    assert runtime.numba_uses_openmp() is uses_openmp


def test_by_default_numba_uses_openmp_only_without_tbb(monkeypatch):
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.setattr(runtime, "tbb_library_paths", lambda: [])
    assert runtime.numba_uses_openmp()
    monkeypatch.setattr(runtime, "tbb_library_paths", lambda: ["/somewhere/libtbb.so.12"])
    assert runtime.numba_uses_openmp() is (not GLIBC)


def test_training_leaves_the_process_alone():
    """CnnModel.train applies no process policy: no OMP_WAIT_POLICY, no allocator setting, even
    where numba runs on OpenMP (the command, or the caller, applies it)."""
    out = run_child(
        """
        model = tiny_model("numpy")
        from fastcnn import runtime
        model.train(1, 10, 0.01, report=0, progress=False)
        report()
        """,
        env=OMP,
    )
    assert out["policy"] == {"enabled": True, "applied": False, "omp_wait_policy": None,
                             "retain_freed_buffers": False}
    # nothing but threadpoolctl's own variable, if it was imported at all
    assert "OMP_WAIT_POLICY" not in out["env_changed"] and out["mallopt"] == 0
    assert out["env_changed"].items() <= THREADPOOLCTL_ENV.items()


def test_switched_off_nothing_is_applied_and_training_still_works():
    out = run_child(
        """
        from fastcnn import runtime
        runtime.set_policy(enabled=False)
        model = tiny_model("numba")
        history = model.train(2, 10, 0.01, report=0, progress=False)
        runtime.apply_policy()  # what the command and training call: a no-op now
        report(epochs=history.epochs, costs=history.costs)
        """
    )
    assert out["policy"] == {"enabled": False, "applied": False, "omp_wait_policy": None,
                             "retain_freed_buffers": False}
    assert out["env_changed"] == THREADPOOLCTL_ENV and out["mallopt"] == 0
    assert out["epochs"] == [1, 2] and all(np.isfinite(out["costs"]))


def test_the_command_switches_the_policy_off(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runtime, "_policy", runtime.Policy())  # this process's own policy comes back after
    assert cli.build_parser().parse_args(["train"]).process_policy is True
    code = cli.main(["train", "--no-process-policy", "--epochs", "1", "--backend", "numpy", "--show", "0",
                     "--hconfig", "[8]", "--out", str(tmp_path / "run")])
    assert code == 0
    assert runtime.policy() == runtime.Policy(enabled=False)
    capsys.readouterr()


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", np.float64(2.0)])
def test_set_num_threads_checks_its_argument(bad, default_threads):
    with pytest.raises(ValueError, match=r"thread count must be an int >= 1 .*got " + re.escape(repr(bad))):
        runtime.set_num_threads(bad)
    assert runtime.num_threads() == runtime.default_threads()


def test_set_num_threads_sets_the_pool_and_numba_aots_cut(default_threads):
    runtime.set_num_threads(np.int64(3))
    assert runtime.num_threads() == 3
    workers.run([lambda: None, lambda: None])
    assert workers._pool_size == 2  # the caller runs one piece
    runtime.set_num_threads(1)
    workers.run([lambda: None, lambda: None])
    assert workers._pool_size == 1
    if backend_available("numba-aot"):
        from fastcnn.kernels import numba_aot

        assert numba_aot.num_threads is runtime.num_threads  # what its kernels read at every call
        assert numba_aot.num_threads() == 1
    runtime.set_num_threads(None)
    assert runtime.num_threads() == runtime.default_threads()


def test_set_num_threads_sets_numbas_count_in_every_thread_a_model_runs_in(default_threads):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 numba threads")
    hconfigs = [["conv", {"ksize": 3, "chn": 4}], 8]
    model = CnnModel("t", tiny_dataset(), None, hconfigs, backend="numba", seed=1)
    assert runtime.numba_threads() == numba.get_num_threads()
    runtime.set_num_threads(1)
    assert numba.get_num_threads() == 1
    seen = []

    def train_elsewhere():
        seen.append(numba.get_num_threads())  # numba's count is per thread: a new one has all
        model.compute_step(model.dataset.tr_xs[:8], model.dataset.tr_ys[:8])
        seen.append(numba.get_num_threads())

    thread = threading.Thread(target=train_elsewhere)
    thread.start()
    thread.join()
    assert seen == [numba.config.NUMBA_NUM_THREADS, 1]
    runtime.set_num_threads(numba.config.NUMBA_NUM_THREADS + 5)  # more than numba's pool: capped
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    runtime.set_num_threads(None)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


# --------------------------------------------------------------------------
# the BLAS limit
# --------------------------------------------------------------------------


class CountingController:
    """Stands in for threadpoolctl's controller: counts limits entered and restored."""

    def __init__(self):
        self.entered = self.restored = 0

    def limit(self, *, limits, user_api):
        assert (limits, user_api) == (1, "blas")
        self.entered += 1
        controller = self

        class Limiter:
            def restore_original_limits(self):
                controller.restored += 1

        return Limiter()


def test_nested_blas_limits_enter_threadpoolctl_once(monkeypatch):
    fake = CountingController()
    monkeypatch.setattr(runtime, "_controller", fake)
    with runtime.single_threaded_blas():
        with runtime.single_threaded_blas(), runtime.single_threaded_blas():
            assert runtime.blas_depth() == 3
        inside = threading.Thread(target=lambda: runtime.single_threaded_blas().__enter__().__exit__())
        inside.start()
        inside.join()  # another thread's block inside this one: no second limit, no early restore
        assert (fake.entered, fake.restored) == (1, 0)
    assert (fake.entered, fake.restored, runtime.blas_depth()) == (1, 1, 0)


def test_a_model_step_enters_threadpoolctl_once_per_pass(monkeypatch):
    fake = CountingController()
    monkeypatch.setattr(runtime, "_controller", fake)
    hconfigs = [["conv", {"ksize": 3, "chn": 4, "stride": 2}], 8]  # strided: numba_host's own limit, nested
    model = CnnModel("t", tiny_dataset(), None, hconfigs, backend="numba", seed=1)
    model.compute_step(model.dataset.tr_xs[:8], model.dataset.tr_ys[:8])
    assert 1 <= fake.entered <= 2 and fake.restored == fake.entered  # forward, backward
    assert runtime.blas_depth() == 0


def test_training_enters_threadpoolctl_once_for_the_whole_run(monkeypatch):
    """CnnModel.train holds one BLAS limit around all its epochs (each step's own entry nests),
    and restores it when training ends."""
    fake = CountingController()
    monkeypatch.setattr(runtime, "_controller", fake)
    hconfigs = [["conv", {"ksize": 3, "chn": 4}], 8]
    model = CnnModel("t", tiny_dataset(), None, hconfigs, backend="numba", seed=1)
    model.train(2, 4, 0.01, report=0, progress=False)
    assert (fake.entered, fake.restored, runtime.blas_depth()) == (1, 1, 0)


def test_the_blas_limit_is_real_and_restored(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # a controller made now knows every BLAS loaded so far (an earlier test may have loaded
    # another one, e.g. PyTorch's, after the runtime's controller was made; fastcnn only
    # needs NumPy's, loaded before its first step)
    monkeypatch.setattr(runtime, "_controller", None)

    def blas_threads():
        return [m["num_threads"] for m in threadpoolctl.threadpool_info() if m["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with runtime.single_threaded_blas():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
