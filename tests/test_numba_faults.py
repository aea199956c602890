"""The JIT backend after a fork and with a damaged kernel cache (fastcnn.kernels.numba_safety).

Each case runs in a fresh interpreter: the threading layer is chosen once per
process, and numba's cache is read when a process first calls a kernel. Every
child has a timeout, so a hung child fails the test instead of the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
DAMAGED = "discarded a damaged compiled-kernel cache entry"
COMPILING = "fastcnn: compiling fastcnn's kernels for this CPU, first use only"

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _python(code: str, env: dict | None = None, timeout: float = 240, args=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
                          check=False)


_TRAIN_THEN_FORK = """
import hashlib, multiprocessing, os, sys
import numpy as np
import numba
from fastcnn import CnnModel
from fastcnn.datasets.base import ArrayDataset

rng = np.random.default_rng(0)
xs = rng.random((60, 12, 12, 1), dtype=np.float32)
ys = np.eye(3, dtype=np.float32)[np.arange(60) % 3]
ds = ArrayDataset("tiny", xs, ys, "select", ["a", "b", "c"])
model = CnnModel("tiny", ds, None, [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8],
                 backend="numba", seed=1)
model.train(1, 10, 0.01, progress=False)  # the parallel kernels have run in this process

def step_digest(_=None):
    loss, _, grads = model.compute_step(xs[:20], ys[:20])
    model.optimizer.update(model.params, grads)
    digest = hashlib.sha256()
    for key in sorted(model.params):
        digest.update(model.params[key].tobytes())
    return digest.hexdigest()

read, write = os.pipe()
pid = os.fork()
if pid == 0:  # a plain fork: the child trains a step on the numba backend
    os.write(write, step_digest().encode())
    os._exit(0)
os.close(write)
child = os.read(read, 100).decode()
_, status = os.waitpid(pid, 0)
same_as_child = child == step_digest()  # the same step from the same state
same_as_pool = True
if "--pool" in sys.argv:
    with multiprocessing.get_context("fork").Pool(1) as pool:  # what libraries that fork do
        pooled = pool.map(step_digest, [0])[0]
    same_as_pool = pooled == step_digest()
print(numba.threading_layer(), os.waitstatus_to_exitcode(status), same_as_child, same_as_pool)
"""


@needs_fork
def test_a_process_that_trained_on_numba_can_fork_and_the_child_trains_on():
    """The child (a plain fork and a fork-context Pool) runs the parallel kernels and takes the
    same step as its parent, bit for bit, on numba's fork-safe TBB threading layer."""
    proc = _python(_TRAIN_THEN_FORK, args=["--pool"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fork() called from a process already using GNU OpenMP" not in proc.stderr
    assert proc.stdout.split()[-4:] == ["tbb", "0", "True", "True"]


@needs_fork
def test_the_fork_test_fails_under_gnu_openmp():
    """The test above can fail: forced onto the omp layer, the same child is terminated
    (plain fork only: a Pool would wait forever for its killed worker)."""
    proc = _python(_TRAIN_THEN_FORK, env={"NUMBA_THREADING_LAYER": "omp"}, timeout=120)
    if "No threading layer could be loaded" in proc.stderr or "omp" not in proc.stdout + proc.stderr:
        pytest.skip("numba's omp layer is not available here")
    assert proc.stdout.split()[-4:] != ["omp", "0", "True", "True"]


_POOL_CALL = """
import numpy as np
from fastcnn import kernels
x = np.random.default_rng(0).random((4, 9, 8, 3), dtype=np.float32)
got = kernels.max_pool_forward(x, 2, backend="numba")
want = kernels.max_pool_forward(x, 2, backend="numpy")
print("equal" if np.array_equal(got, want) else "DIFFERENT")
"""


def _damage(files: list[Path], how: str) -> None:
    for path in files:
        data = path.read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x80\x05not a pickle" * 3,
                          "empty": b""}[how])


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_a_damaged_kernel_cache_is_discarded_with_one_warning_and_recompiled(tmp_path, how):
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first = _python(_POOL_CALL, env)
    assert first.returncode == 0 and first.stdout.split()[-1] == "equal", first.stderr[-2000:]
    assert first.stderr.count(COMPILING) == 1  # said once, before the first compile
    cached = sorted(tmp_path.rglob("*.nb[ic]"))
    assert any(p.suffix == ".nbi" for p in cached) and any(p.suffix == ".nbc" for p in cached)

    _damage(cached, how)
    second = _python(_POOL_CALL, env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.split()[-1] == "equal"
    assert second.stderr.count(DAMAGED) == 1  # one warning, however many files were damaged
    assert "Error" in second.stderr.split(DAMAGED, 1)[1].splitlines()[0]  # it says what happened

    third = _python(_POOL_CALL, env)  # the cache was written anew: a quiet, normal run
    assert third.returncode == 0 and third.stdout.split()[-1] == "equal"
    assert DAMAGED not in third.stderr and "Warning" not in third.stderr
    assert COMPILING not in third.stderr  # a warm start compiles nothing, and says nothing


def test_only_fastcnns_own_kernels_get_the_guarded_cache(tmp_path):
    """The guard is per dispatcher: a user's own cached numba function keeps numba's cache."""
    script = tmp_path / "users.py"
    script.write_text(textwrap.dedent(
        """
        import numba
        from numba.core.caching import FunctionCache
        from fastcnn.kernels import numba_cpu, numba_kernels

        @numba.njit(cache=True)
        def users(x):
            return x + 1

        print(type(numba_kernels._max_fwd._cache).__name__, type(users._cache) is FunctionCache)
        """
    ))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["GuardedCache", "True"]


def test_the_compile_notice_says_it_once_then_shows_progress_while_compiling():
    import io

    from fastcnn.kernels.numba_safety import STALL_SECONDS, CompileNotice

    now = [100.0]
    out = io.StringIO()
    notice = CompileNotice(out=out, clock=lambda: now[0], every=10)
    notice.begin("_conv_fwd", "/cache", thread=False)
    notice.begin("_to_planar", "/cache", thread=False)  # a callee: no second first line
    now[0] += 5
    assert notice.tick() and out.getvalue().count("\n") == 1
    now[0] += 5
    notice.end()
    assert notice.tick()
    lines = out.getvalue().splitlines()
    assert lines == ["fastcnn: compiling fastcnn's kernels for this CPU, first use only (up to a minute; "
                     "cached in /cache)", "fastcnn: still compiling kernels (1 done, 10 s so far)"]
    notice.end()
    assert not notice.tick()  # nothing compiles: the progress thread stops
    notice.begin("_max_fwd", "/cache", thread=False)  # a later compile: progress, no first line again
    now[0] += STALL_SECONDS + 1  # ...and a compile that never ended (numba raised) stops the lines
    assert not notice.tick()
    assert len(out.getvalue().splitlines()) == 2


def test_a_disabled_compile_notice_says_nothing():
    """``enabled = False`` (the numba-aot build, which reports itself): no first line, no progress."""
    import io

    from fastcnn.kernels.numba_safety import CompileNotice

    now = [0.0]
    out = io.StringIO()
    notice = CompileNotice(out=out, clock=lambda: now[0], every=10)
    notice.enabled = False
    notice.begin("_conv_fwd", "/cache", thread=False)
    now[0] += 30
    assert notice.tick()  # still counting: a compile is under way
    notice.end()
    assert out.getvalue() == "" and notice.compiled == 1
