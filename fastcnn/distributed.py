"""Data-parallel training over MPI with the same bits for any number of processes.

``mpiexec -n N fastcnn train ...`` or, from Python::

    from fastcnn import CnnModel, distributed
    from fastcnn.datasets import MnistDataset
    comm = distributed.world()              # mpi4py's COMM_WORLD; threads per rank set
    shard = distributed.data_shard(comm, chunks=2, batch_size=32)   # this rank's rows only
    ds = distributed.load_together(comm, lambda: MnistDataset(path, shard=shard))
    model = CnnModel('mnist', ds, None, hconfigs, seed=1, comm=comm, chunks=2)
    model.exec_all(2, batch_size=32)        # rank 0 prints; every rank holds the same params

Every global batch is cut into ``chunks`` chunks (``fastcnn.chunks``; an option, never
the process count); rank ``r`` computes the contiguous chunks ``rank_chunks(K, N, r)`` of
every batch, reading only those samples. With ``K > 1`` chunk ``c`` always draws from the
fixed shard ``c`` of the training split (``fastcnn.shards``), so a rank can load just the
shards of its chunks (``data_shard``; IDX files and image folders read only those rows).
The weighted chunk gradients are summed over one
fixed tree: each rank sums the subtrees it owns, then a reduce-scatter made of
``Alltoallv`` (every rank gets one slice of every subtree sum) and a sum over the same tree
on each slice, then ``Allgatherv`` of the summed slices. MPI's ``Allreduce`` promises no
order; this does, so N = 1, 2, 4 ... and a single process with the same ``chunks`` give
the same bits. Bytes each rank sends per step: about ``2 P (N - 1) / N`` for ``P``
parameter bytes (when the chunks split evenly), as a ring allreduce.

Each step also exchanges a small status (``allgather``): every rank's chunk costs and
accuracies, whether its gradients are finite, whether it was asked to stop (Ctrl-C).
So a NaN ends every rank at the same step with one ``TrainingDiverged`` naming the rank,
and Ctrl-C on ``mpiexec`` stops every rank after the current step. Any other exception on
one rank prints one line naming the rank and the cause and ends the job (``MPI.Abort``);
a rank that dies is reported by the launcher, which ends the others; a rank that waits
longer than ``timeout`` seconds for the others in a collective ends the job too.

Validation and test accuracy are computed by rank 0 and broadcast (only rank 0's shard holds
those splits; the others draw the same validation picks to keep their generators in step).
Only rank 0 prints.
``mpi4py`` is imported only here and only when a communicator is asked for (the
``fastcnn[mpi]`` extra). Launching, threads and the cost model: docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import socket
import sys
import threading
import time

import numpy as np

from . import chunks as ck
from . import runtime, shards
from .shards import data_shard, load_together  # noqa: F401 - the loading side of this API
from .train import TrainingDiverged

#: seconds a rank waits for the others in one collective before it ends the job; the first
#: step includes the kernels' compile (about 40 s on a cold cache)
DEFAULT_TIMEOUT = 600.0
#: environment variables set by the launchers of the MPI implementations fastcnn knows
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``, ``srun`` with PMI)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def launcher_rank() -> int | None:
    """This process's rank as the MPI launcher set it in the environment, or None."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def world(*, threads: int | None = None):
    """mpi4py's ``COMM_WORLD``, with this rank's kernel threads set (``rank_threads``).

    ImportError naming the ``fastcnn[mpi]`` extra when mpi4py or an MPI library is missing.
    """
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed training needs mpi4py and an MPI library: pip install "
                          f"'fastcnn[mpi]' ({exc})") from exc
    comm = MPI.COMM_WORLD
    set_rank_threads(comm, threads)
    return comm


def rank_threads(comm, threads: int | None = None) -> int:
    """This rank's thread count: ``threads`` if given, else ``NUMBA_NUM_THREADS`` if set, else the
    cores the launcher bound this rank to (when it bound it to fewer than the machine's), else
    the node's cores divided by the ranks on this node (at least 1)."""
    if threads is not None:
        if not ck.is_int(threads) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        return int(threads)
    if os.environ.get("NUMBA_NUM_THREADS", "").isdigit():
        return runtime.default_threads()
    cores = os.cpu_count() or 1
    try:
        bound = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        bound = cores
    if bound < cores:
        return max(1, bound)
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    per_node = node.Get_size()
    node.Free()
    return max(1, cores // per_node)


def set_rank_threads(comm, threads: int | None = None) -> int:
    """Set this rank's kernel threads (``fastcnn.runtime.set_num_threads``); returns the count."""
    count = rank_threads(comm, threads)
    runtime.set_num_threads(count)
    return count


class _Watchdog:
    """Ends the job (``comm.Abort``) when a collective has waited longer than ``timeout`` s."""

    def __init__(self, comm, timeout: float):
        self.comm, self.timeout = comm, float(timeout)
        self.what, self.deadline = None, None
        self._wake = threading.Event()
        self._thread = None

    @contextlib.contextmanager
    def guard(self, what: str):
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="fastcnn-mpi-watchdog", daemon=True)
            self._thread.start()
        self.what, self.deadline = what, time.monotonic() + self.timeout
        try:
            yield
        finally:
            self.deadline = None

    def _watch(self):
        while not self._wake.wait(min(1.0, self.timeout / 4)):
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                abort(self.comm, f"waited {self.timeout:g} s for the other ranks in {self.what}: a rank is "
                      "stuck or dead")


#: seconds a failing rank waits between printing its line and ``MPI_Abort``: the launcher forwards
#: a rank's output asynchronously and drops what it has not forwarded when the job is aborted
#: (MPICH's launcher lost the line once under load, in a full test run)
ABORT_GRACE = 0.5


def abort(comm, message: str, code: int = 1) -> None:
    """Print one line naming this rank, give the launcher ``ABORT_GRACE`` to forward it, then end
    every rank of the job."""
    print(f"fastcnn: rank {comm.Get_rank()} of {comm.Get_size()}: {message}; ending the job",
          file=sys.__stderr__, flush=True)
    time.sleep(ABORT_GRACE)
    comm.Abort(code)


class LocalPlan:
    """One process: the batch in ``chunks`` chunks (``fastcnn.chunks.local_step``)."""

    rank, size, is_root = 0, 1, True

    def __init__(self, chunks: int = 1):
        self.chunks = ck.check_chunks(chunks)

    def check(self, model, batch_size: int) -> None:
        """Raise before training when this plan cannot train ``model`` at ``batch_size`` (e.g. its
        dataset holds another process's shard, or fewer training rows than chunks)."""
        shards.check_dataset(model.dataset, batch_size, self.chunks, self.size, self.rank)

    @contextlib.contextmanager
    def session(self):
        yield self

    def step(self, model, ds, rows):
        x, y = ds.get_train_data(rows)
        return ck.local_step(model, x, y, self.chunks)

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt on every rank when any rank was asked to stop."""

    def evaluate(self, model, xs, ys):
        return model.eval_accuracy(xs, ys)

    def quiet(self):
        return contextlib.nullcontext()


class MpiPlan(LocalPlan):
    """``comm.Get_size()`` processes, each computing its chunks of every batch."""

    def __init__(self, comm, chunks: int = ck.DEFAULT_CHUNKS, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(chunks)
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        self.watchdog = _Watchdog(comm, timeout)
        self._stop_asked = False  # set by SIGINT on this rank
        self._stop = False  # some rank was asked: every rank stops after this step

    def check(self, model, batch_size: int) -> None:
        ck.check_processes(self.size, batch_size, self.chunks)
        super().check(model, batch_size)
        stateful = [key for key in model.params if key.endswith(("/mavg", "/mvar"))]
        if self.size > 1 and stateful:
            raise ValueError(f"batch normalization ({stateful[0]}) keeps moving statistics that each "
                             "process would update with its own chunks only: not supported over several "
                             "processes yet")

    @contextlib.contextmanager
    def session(self):
        """Only rank 0 prints; SIGINT asks every rank to stop after the step; an exception on
        one rank (other than a divergence, which every rank sees at once) ends the job."""
        previous = signal.getsignal(signal.SIGINT)
        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.signal(signal.SIGINT, self._ask_stop)
        try:
            self._announce_ranks()
            with self.quiet():
                yield self
        except (TrainingDiverged, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self.size > 1:
                abort(self.comm, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)

    def _announce_ranks(self) -> None:
        """Rank 0 prints which process is which rank. A rank killed under ``fastcnn train`` is
        named by its parent (``rank_supervisor``); without one (a script that did not call
        ``supervise()``) the launcher names only the process id, and this line turns it into a rank."""
        if self.size == 1:
            return
        where = self.comm.allgather((socket.gethostname(), os.getpid()))
        if self.is_root:
            ranks = ", ".join(f"rank {r} pid {pid} on {host}" for r, (host, pid) in enumerate(where))
            print(f"fastcnn: {ranks} (a launcher message naming a process id names its rank here)",
                  flush=True)

    def _ask_stop(self, signum, frame):
        self._stop_asked = True

    def quiet(self):
        if self.is_root:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return stack

    def step(self, model, ds, rows):
        bounds = ck.chunk_bounds(len(rows), self.chunks)
        if self.size == 1:
            x, y = ds.get_train_data(rows)
            return ck.local_step(model, x, y, self.chunks)
        first, stop = ck.rank_chunks(len(bounds), self.size, self.rank)
        x, y = ds.get_train_data(rows[bounds[first][0] : bounds[stop - 1][1]])
        result = ck.compute_chunks(model, x, y, bounds, first, stop)
        bad = _non_finite(result)
        with self.watchdog.guard("the status exchange"):
            states = self.comm.allgather((result.costs, result.accs, bad, self._stop_asked))
        failed = [f"rank {r}: {state[2]}" for r, state in enumerate(states) if state[2]]
        if failed:
            raise TrainingDiverged(f"Model {model.name}: training diverged ({'; '.join(failed)}). The "
                                   "learning rate is probably too high or the input is not normalized")
        self._stop = any(state[3] for state in states)
        costs = {c: v for state in states for c, v in state[0].items()}
        accs = {c: v for state in states for c, v in state[1].items()}
        cost, acc = ck.combine_scores(bounds, costs, accs)
        return cost, acc, self._reduce(model, result.nodes, len(bounds))

    def _reduce(self, model, nodes: dict, count: int) -> dict:
        """The tree sum of every rank's subtree sums, the same bits on every rank."""
        comm, size, rank = self.comm, self.size, self.rank
        first = next(iter(nodes.values()))
        keys = [key for key in model.params if key in first]
        dtype = first[keys[0]].dtype
        total = sum(first[k].size for k in keys)
        cuts = [j * total // size for j in range(size + 1)]
        owners = [ck.owned_nodes(0, count, *ck.rank_chunks(count, size, r)) for r in range(size)]
        flat = {node: np.concatenate([grads[k].ravel() for k in keys]) for node, grads in nodes.items()}
        mine = owners[rank]
        send = np.concatenate([flat[node][cuts[j] : cuts[j + 1]] for j in range(size) for node in mine])
        send_counts = [len(mine) * (cuts[j + 1] - cuts[j]) for j in range(size)]
        width = cuts[rank + 1] - cuts[rank]
        recv_counts = [len(owners[r]) * width for r in range(size)]
        recv = np.empty(sum(recv_counts), dtype)
        with self.watchdog.guard("the gradient reduce-scatter (Alltoallv)"):
            comm.Alltoallv([send, (send_counts, _displs(send_counts))],
                           [recv, (recv_counts, _displs(recv_counts))])
        parts, at = {}, 0
        for r in range(size):
            for node in owners[r]:
                parts[node] = recv[at : at + width]
                at += width
        mine_sum = np.ascontiguousarray(ck.tree_sum(0, count, lambda lo, hi: parts.get((lo, hi))))
        full = np.empty(total, dtype)
        widths = [cuts[j + 1] - cuts[j] for j in range(size)]
        with self.watchdog.guard("the gradient allgather (Allgatherv)"):
            comm.Allgatherv(mine_sum, [full, (widths, _displs(widths))])
        grads, at = {}, 0
        for k in keys:
            shape = first[k].shape
            n = first[k].size
            grads[k] = full[at : at + n].reshape(shape)
            at += n
        return grads

    def check_stop(self) -> None:
        if self._stop:
            raise KeyboardInterrupt

    def evaluate(self, model, xs, ys):
        acc = model.eval_accuracy(xs, ys) if self.is_root else None
        with self.watchdog.guard("the accuracy broadcast"):
            return self.comm.bcast(acc, root=0)

    def same_params(self, model) -> None:
        """Raise on every rank unless every rank holds rank 0's parameters, bit for bit."""
        digest = hashlib.sha256()
        for key in sorted(model.params):
            digest.update(np.ascontiguousarray(model.params[key]).tobytes())
        digest = digest.hexdigest()
        with self.watchdog.guard("the parameter check"):
            digests = self.comm.allgather(digest)
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RuntimeError(f"the parameters of rank(s) {differ} differ from rank 0's after training")


def _displs(counts) -> list[int]:
    return [int(v) for v in np.concatenate([[0], np.cumsum(counts)[:-1]])]


def _non_finite(result) -> str:
    for c, cost in result.costs.items():
        if not np.isfinite(cost):
            return f"the cost of chunk {c} is {cost}"
    for node, grads in result.nodes.items():
        for key, g in grads.items():
            if not np.isfinite(g).all():
                return f"the gradient of {key} over chunks {node[0]}..{node[1] - 1} is not finite"
    return ""


def plan_for(model):
    """The plan ``model`` trains with: its ``comm`` (``MpiPlan``) or one process (``LocalPlan``)."""
    comm, chunks = getattr(model, "comm", None), getattr(model, "chunks", None)
    if comm is None:
        return LocalPlan(1 if chunks is None else chunks)
    plan = getattr(model, "_mpi_plan", None)  # one per model: its watchdog thread, its stop flag
    if plan is None or plan.comm is not comm or plan.chunks != (chunks or ck.DEFAULT_CHUNKS):
        plan = MpiPlan(comm, ck.DEFAULT_CHUNKS if chunks is None else chunks,
                       getattr(model, "comm_timeout", DEFAULT_TIMEOUT))
        model._mpi_plan = plan
    return plan


def train_command(model, args) -> int:
    """``fastcnn train`` on a rank other than 0: the same training and test, nothing printed or
    written (rank 0 writes the run folder)."""
    plan = plan_for(model)
    with plan.quiet():
        model.exec_all(args.epochs, args.batch_size, args.learning_rate, args.report, args.show,
                       show_params=False)
    plan.same_params(model)
    return 0
