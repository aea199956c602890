"""How much of a small-batch training step is not kernel time (the engine issue's item 3).

Trains the book's flowers network (``fastcnn.zoo`` preset ``flower``, 96x96x3) on the
numba backend at batch 1 and batch 10, and splits each step (``compute_step`` + the
Adam update) into time inside the compiled kernels and the dense layers' BLAS
products, and everything else: the model's and the layers' Python, the host side of
the backend (choosing kernels, padding weights, allocating), numba's dispatch. The
compiled kernels are timed through a proxy around the backend's kernel namespace,
so the proxy's own cost (well under a microsecond a call) counts as kernel time.
The steps run inside one BLAS limit (``runtime.single_threaded_blas``), as
``CnnModel.train`` runs its epochs; a step called on its own enters it itself.

Usage::

    python benchmarks/step_overhead.py [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from bench_common import cpu_description

from fastcnn import CnnModel, runtime
from fastcnn.datasets.base import ArrayDataset
from fastcnn.kernels import blocked_matmul, get_backend
from fastcnn.zoo import get_preset

_spent = [0.0]


def _timed(fn):
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[0] += time.perf_counter() - start

    return call


class _TimedKernels:
    """The backend's compiled kernels, each call timed into ``_spent``."""

    def __init__(self, kernels):
        self._kernels = kernels

    def __getattr__(self, name):
        value = getattr(self._kernels, name)
        return _timed(value) if callable(value) else value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200,
                        help="timed steps at batch 10 (five times as many at batch 1); 40 gave medians of "
                        "7.8-13.7 %% from run to run on a shared machine, 200 gave 8.0-8.2 %%")
    args = parser.parse_args(argv)
    runtime.apply_policy()
    host = get_backend("numba")
    host.k = _TimedKernels(host.k)
    blocked_matmul.matmul = _timed(blocked_matmul.matmul)
    rng = np.random.default_rng(0)
    xs = rng.random((400, 96, 96, 3), dtype=np.float32)
    ys = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 400)]
    ds = ArrayDataset("flowers", xs, ys, "select", list("abcde"), split=(1.0, 0.0))
    print(cpu_description())
    for batch in (1, 10):
        model = CnnModel("flowers", ds, None, get_preset("flower"), backend="numba", seed=1)

        def step(i, model=model, batch=batch):
            lo = (i * batch) % (len(xs) - batch)
            _, _, grads = model.compute_step(xs[lo:lo + batch], ys[lo:lo + batch], reuse_grads=True)
            model.optimizer.update(model.params, grads)

        steps = args.steps * (5 if batch == 1 else 1)
        totals, others = [], []  # per step: its time, and its time outside the kernels
        with runtime.single_threaded_blas():  # once around the steps, as CnnModel.train holds it
            for i in range(5):
                step(i)
            for i in range(steps):
                _spent[0] = 0.0
                start = time.perf_counter()
                step(i)
                totals.append(time.perf_counter() - start)
                others.append(totals[-1] - _spent[0])
        # medians: a step that the shared machine preempted counts once, not in a mean
        total, other = statistics.median(totals), statistics.median(others)
        print(f"flowers network, batch {batch:2d}: step {total * 1e3:6.3f} ms (median of {steps}), "
              f"not kernel time {other * 1e3:6.3f} ms ({other / total * 100:4.1f} %); "
              f"mean step {statistics.fmean(totals) * 1e3:6.3f} ms, "
              f"not kernel time {statistics.fmean(others) * 1e3:6.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
