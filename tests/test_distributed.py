"""Data-parallel training: chunked gradients on one process, and real ``mpiexec`` runs with
1, 2 and 4 ranks giving the same parameters, bit for bit, and faults that end the job.

The MPI tests run ``mpiexec`` from this environment's ``bin/`` (the ``fastcnn[mpi]`` extra,
installed by ``make test``); they are skipped only when mpi4py or that launcher is missing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastcnn import CnnModel, chunks, distributed
from fastcnn.datasets import DigitsDataset

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
DRIVER = Path(__file__).with_name("mpi_driver.py")
HCONFIGS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]
HCONFIG_JSON = '[["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]'
#: the issue's "done when" command, after ``fastcnn train``
TRAIN = ["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--seed", "1", "--show", "0"]
#: a subprocess that takes longer has hung (a cold numba cache compiles for about 30 s once)
LIMIT = 120


def _mpi_missing() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'fastcnn[mpi]')"
    return "" if MPIEXEC.is_file() else f"no mpiexec in {BIN} (pip install 'fastcnn[mpi]')"


needs_mpi = pytest.mark.skipif(bool(_mpi_missing()), reason=_mpi_missing() or "MPI available")


def _model(chunk_count, seed=1):
    return CnnModel("digits", DigitsDataset(), None, HCONFIGS, seed=seed, backend="numpy", chunks=chunk_count)


# -- the fixed order, on one process -----------------------------------------------


def test_chunk_bounds_cover_the_batch_in_near_equal_parts():
    assert chunks.chunk_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert chunks.chunk_bounds(3, 4) == [(0, 1), (1, 2), (2, 3)]
    assert chunks.chunk_bounds(8, 1) == [(0, 8)]


@pytest.mark.parametrize("count", [1, 3, 4, 7, 8])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_every_rank_split_sums_to_the_same_bits(count, size):
    if size > count:
        pytest.skip("more ranks than chunks is refused")
    rng = np.random.default_rng(count * 10 + size)
    leaves = [rng.standard_normal(257).astype(np.float32) for _ in range(count)]

    def leaf(lo, hi):
        return leaves[lo] if hi - lo == 1 else None

    whole = chunks.tree_sum(0, count, leaf)
    parts = {}
    for r in range(size):
        first, stop = chunks.rank_chunks(count, size, r)
        for node in chunks.owned_nodes(0, count, first, stop):
            assert first <= node[0] < node[1] <= stop
            parts[node] = chunks.tree_sum(*node, leaf)
    assert np.array_equal(chunks.tree_sum(0, count, lambda lo, hi: parts.get((lo, hi))), whole)


def test_one_chunk_is_the_classic_step():
    a, b = _model(None), _model(1)
    a.train(1, 32, 0.001, 0, progress=False)
    b.train(1, 32, 0.001, 0, progress=False)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_a_chunked_step_is_close_to_the_classic_step_and_training_repeatable():
    ref, c4, again = _model(None), _model(4), _model(4)
    x, y = ref.dataset.get_train_data(np.arange(32))
    classic = ref.compute_step(x, y)[2]
    chunked = chunks.local_step(c4, x, y, 4)[2]
    assert all(np.allclose(classic[k], chunked[k], atol=1e-6) for k in classic)
    for m in (c4, again):  # with 4 chunks the epoch's order is shard by shard (fastcnn.shards)
        m.train(1, 32, 0.001, 0, progress=False)
    assert all(np.array_equal(c4.params[k], again.params[k]) for k in c4.params)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_chunks_name_the_option(bad):
    with pytest.raises(ValueError, match="chunks must be an int >= 1"):
        _model(bad)


class _FakeComm:
    def __init__(self, size, rank=0):
        self.size, self.rank = size, rank

    def Get_size(self):
        return self.size

    def Get_rank(self):
        return self.rank


def test_more_processes_than_chunks_is_refused_before_training():
    plan = distributed.MpiPlan(_FakeComm(4), chunks=2)
    with pytest.raises(ValueError, match="4 processes need at least 4 chunks"):
        plan.check(_model(2), 32)


def test_batch_norm_over_several_processes_is_refused():
    model = CnnModel("digits", DigitsDataset(), None, [["batch_normal"], 16], seed=1, backend="numpy")
    with pytest.raises(ValueError, match="batch normalization"):
        distributed.MpiPlan(_FakeComm(2), chunks=4).check(model, 32)


# -- real mpiexec runs ------------------------------------------------------------


def _run(cmd, **kwargs):
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT, **kwargs)
    return proc, time.monotonic() - start


def _plain(tmp_path_factory, *extra):
    out = tmp_path_factory.mktemp("plain")
    proc, _ = _run([str(BIN / "fastcnn"), *TRAIN, *extra, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    return (out / "params.npz").read_bytes()


@pytest.fixture(scope="module")
def plain_params(tmp_path_factory):
    """``fastcnn train`` without mpiexec (numba backend, default chunks): also warms the kernel cache."""
    return _plain(tmp_path_factory)


@pytest.fixture(scope="module")
def plain_params_4(tmp_path_factory):
    """The same with ``--chunks 4``, so that 4 ranks can share each batch."""
    return _plain(tmp_path_factory, "--chunks", "4")


def _mpi_train(ranks, out, *extra):
    proc, _ = _run([str(MPIEXEC), "-n", str(ranks), str(BIN / "fastcnn"), *TRAIN, *extra, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert f"data-parallel over {ranks} MPI processes" in proc.stdout
    assert proc.stdout.count("test report: accuracy") == 1  # rank 0 alone prints
    return (out / "params.npz").read_bytes()


@needs_mpi
def test_mpiexec_n2_train_with_default_options_equals_a_plain_run(plain_params, tmp_path):
    assert _mpi_train(2, tmp_path / "run") == plain_params


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_mpiexec_train_writes_the_same_params_for_1_2_4_ranks(ranks, plain_params_4, tmp_path):
    assert _mpi_train(ranks, tmp_path / "run", "--chunks", "4") == plain_params_4


@needs_mpi
def test_mpiexec_n2_on_idx_files_read_by_shard_equals_a_plain_run(tmp_path):
    from test_datasets import write_mnist

    write_mnist(tmp_path / "mnist", n_train=200, n_test=40)  # 100 training, 100 validation images
    args = ["train", "--dataset", "mnist", "--data-path", str(tmp_path / "mnist"), "--hconfig", HCONFIG_JSON,
            "--epochs", "2", "--batch-size", "16", "--seed", "1", "--show", "2"]
    plain, _ = _run([str(BIN / "fastcnn"), *args, "--out", str(tmp_path / "plain")])
    assert plain.returncode == 0, plain.stderr
    proc, _ = _run([str(MPIEXEC), "-n", "2", str(BIN / "fastcnn"), *args, "--out", str(tmp_path / "mpi")])
    assert proc.returncode == 0, proc.stderr
    # 6 batches of 2 chunks of 8: shard c holds 6 x 8 rows and 2 of the 4 left over; rank 0 also
    # holds the validation and test images, rank 1 none of them
    assert "train/valid/test=100/100/40, holds training shard 0 of 2 + validation/test: training rows 0..49" \
        in proc.stdout
    assert (tmp_path / "mpi" / "params.npz").read_bytes() == (tmp_path / "plain" / "params.npz").read_bytes()


@needs_mpi
def test_more_ranks_than_chunks_is_one_clear_error(tmp_path):
    proc, _ = _run([str(MPIEXEC), "-n", "4", str(BIN / "fastcnn"), *TRAIN, "--out", str(tmp_path / "r")])
    assert proc.returncode != 0
    assert proc.stderr.count("4 processes need at least 4 chunks") == 1


def _driver(ranks, *args):
    return _run([str(MPIEXEC), "-n", str(ranks), sys.executable, str(DRIVER), *map(str, args)])


@pytest.fixture(scope="module")
def warm_driver(tmp_path_factory):
    """One clean driver run first: the kernels it uses are then in the cache, so the fault tests'
    time bounds measure the fault handling, not a first compile (about 40 s on 2 cores)."""
    proc, _ = _driver(1, tmp_path_factory.mktemp("warm") / "p.npz", "none")
    assert proc.returncode == 0, proc.stderr


@needs_mpi
def test_a_rank_that_raises_ends_the_job_naming_it(warm_driver, tmp_path):
    proc, secs = _driver(2, tmp_path / "p.npz", "raise", 1, 3)
    assert proc.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected failure; ending the job" in proc.stderr
    assert "params ok" not in proc.stdout and secs < 30


@needs_mpi
def test_a_rank_that_diverges_stops_every_rank_naming_it(warm_driver, tmp_path):
    proc, secs = _driver(2, tmp_path / "p.npz", "nan", 1, 3)
    assert proc.returncode != 0
    assert "TrainingDiverged" in proc.stderr and "rank 1: the gradient of" in proc.stderr
    assert "params ok" not in proc.stdout and secs < 30


@needs_mpi
def test_a_killed_rank_ends_the_job(warm_driver, tmp_path):
    proc, secs = _driver(2, tmp_path / "p.npz", "kill", 1, 3)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "params ok" not in proc.stdout and secs < 30
    # one line names the rank, its process (the pid rank 0 announced for rank 1) and the cause
    (line,) = [line for line in out.splitlines() if "was killed" in line]
    pid = re.search(r"rank 1 pid (\d+) on ", proc.stdout).group(1)
    assert line.startswith(f"fastcnn: rank 1 (pid {pid} on ")
    assert line.endswith("was killed by SIGKILL (signal 9): out of memory, or killed from outside; "
                         "ending the job")


@needs_mpi
def test_a_rank_that_stops_answering_ends_the_job_after_the_timeout(warm_driver, tmp_path):
    proc, secs = _driver(2, tmp_path / "p.npz", "hang", 1, 3, "--timeout", 2)
    assert proc.returncode != 0
    assert "rank 0 of 2: waited 2 s for the other ranks" in proc.stderr
    assert secs < 30


@needs_mpi
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_step(warm_driver, tmp_path):
    proc, _ = _driver(2, tmp_path / "p.npz", "sigint", 1, 3)
    assert proc.returncode == 0, proc.stderr
    # 2 chunks (the default), rank 1 computes chunk 1 of every batch: its 3rd call is in batch 3,
    # which every rank completes
    assert "interrupted at epoch 1 (batch 3/44)" in proc.stdout
    assert "interrupted=True" in proc.stdout and "params ok" in proc.stdout  # same params everywhere


@needs_mpi
def test_ctrl_c_on_mpiexec_stops_every_rank(warm_driver, tmp_path):
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, str(DRIVER), str(tmp_path / "p.npz"), "announce", 0, 5,
           "--epochs", "1000"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")
        assert any(line.strip() == "training" for line in lines)  # both ranks are in their loops
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "interrupted=True" in out and "params ok" in out


def test_abort_prints_its_line_and_waits_before_ending_the_job(monkeypatch, capfd):
    """``abort`` prints the rank's line, gives the launcher ABORT_GRACE to forward it, then
    calls MPI_Abort: in that order (a fake communicator; no MPI needed)."""
    from fastcnn import distributed

    events = []

    class Comm:
        def Get_rank(self):
            return 1

        def Get_size(self):
            return 2

        def Abort(self, code):
            events.append(("abort", code))

    def sleep(seconds):  # what stderr held by the time the rank waits
        events.append(("sleep", seconds, capfd.readouterr().err))

    monkeypatch.setattr(distributed.time, "sleep", sleep)
    distributed.abort(Comm(), "RuntimeError: boom", 3)
    line = "fastcnn: rank 1 of 2: RuntimeError: boom; ending the job\n"
    assert events == [("sleep", distributed.ABORT_GRACE, line), ("abort", 3)] and distributed.ABORT_GRACE > 0
