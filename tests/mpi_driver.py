"""Run under ``mpiexec`` by tests/test_distributed.py: a small digits model trained over MPI
from Python (each rank loading its shard, ``distributed.data_shard``), with one fault injected
on one rank at one step.

    mpiexec -n 2 python tests/mpi_driver.py OUT.npz [FAULT RANK STEP] [--timeout S] [--epochs E]

FAULT: ``raise`` (an exception), ``nan`` (a NaN gradient), ``kill`` (SIGKILL itself),
``hang`` (stop answering), ``sigint`` (a Ctrl-C delivered to this rank), ``announce`` (print
``training``), ``none``.
Rank 0 saves the parameters to OUT.npz and prints ``interrupted=<bool>`` and ``params ok``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import numpy as np

from fastcnn import CnnModel, distributed
from fastcnn.datasets import DigitsDataset
from fastcnn.rank_supervisor import supervise

HCONFIGS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]


def inject(model, fault: str, step: int) -> None:
    """Wrap ``model.compute_step`` so that its ``step``-th call (counting from 1) misbehaves."""
    real = model.compute_step
    calls = [0]

    def compute_step(x, y, **kwargs):
        calls[0] += 1
        if calls[0] == step:
            if fault == "raise":
                raise RuntimeError("injected failure")
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "hang":
                threading.Event().wait()
            if fault == "sigint":
                signal.raise_signal(signal.SIGINT)
            if fault == "announce":  # every rank has passed a collective: each is in its training loop
                print("training", flush=True)
        cost, acc, grads = real(x, y, **kwargs)
        if fault == "nan" and calls[0] == step:
            first = next(iter(grads))
            grads[first] = grads[first] * np.float32("nan")
        return cost, acc, grads

    model.compute_step = compute_step


def main() -> int:
    supervise()  # the rank runs as this process's child: a killed rank is named (rank_supervisor)
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("fault", nargs="?", default="none")
    parser.add_argument("rank", nargs="?", type=int, default=-1)
    parser.add_argument("step", nargs="?", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=distributed.DEFAULT_TIMEOUT)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()
    comm = distributed.world()
    shard = distributed.data_shard(comm, 2, 32)  # each rank keeps only the rows of its chunk
    ds = distributed.load_together(comm, lambda: DigitsDataset(shard=shard))
    model = CnnModel("digits", ds, None, HCONFIGS, seed=3, backend=args.backend, comm=comm, chunks=2)
    model.comm_timeout = args.timeout
    if comm.Get_rank() == args.rank:
        inject(model, args.fault, args.step)
    history = model.train(args.epochs, 32, 0.001, 0, progress=False)
    distributed.plan_for(model).same_params(model)
    if comm.Get_rank() == 0:
        np.savez(args.out, **model.params)
        print(f"interrupted={history.interrupted} steps={len(history.epochs)}", flush=True)
        print("params ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
