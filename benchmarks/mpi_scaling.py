"""What chunked, bit-reproducible data-parallel training costs and gains (docs/distributed.md).

Two measurements, on synthetic data of the right shapes (SimpleConvNet at batch 100 on
28x28x1, the book's flowers stack at batch 10 on 96x96x3), numba backend:

1. ``chunks``: one process, the step (forward, backward, chunk sums, Adam update) with
   ``--chunks`` 1 (the classic step) against 2, 4 and 8, one model per variant, variants
   interleaved round by round (A/B/C/D, then the order reversed); min and median per step.
2. ``ranks``: the same step with 4 chunks as 1 rank x 2 threads, 2 ranks x 1 thread and 1 rank
   x 1 thread, each a fresh ``mpiexec`` run; rank 0 reports min and median per step, and how
   long the gradient reduction took (status exchange, Alltoallv, Allgatherv).

    .venv/bin/python benchmarks/mpi_scaling.py [--rounds 7] [--steps 20] [--part chunks|ranks|all]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_description  # noqa: E402

#: name -> (zoo preset, input shape, classes, batch)
WORKLOADS = {"simpleconvnet": ("simpleconvnet", (28, 28, 1), 10, 100),
             "flower": ("flower", (96, 96, 3), 5, 10)}


def make_model(workload: str, chunks: int, comm=None):
    from fastcnn import CnnModel, zoo
    from fastcnn.datasets import ArrayDataset

    preset, shape, classes, batch = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    n = batch * 8
    xs = rng.random((n, *shape), dtype=np.float32)
    ys = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    ds = ArrayDataset("synthetic", xs, ys, "select", split=(0.9, 0.05))
    model = CnnModel(workload, ds, None, zoo.get_preset(preset), seed=1, comm=comm, chunks=chunks)
    model.optimizer.lr = 0.001
    return model, ds, batch


def step_times(model, ds, batch: int, steps: int, plan=None) -> list[float]:
    from fastcnn.distributed import plan_for

    plan = plan or plan_for(model)
    times = []
    for n in range(steps):
        rows = np.arange(n % 4 * batch, (n % 4 + 1) * batch)
        start = time.perf_counter()
        _, _, grads = plan.step(model, ds, rows)
        model.optimizer.update(model.params, grads)
        times.append(time.perf_counter() - start)
    return times


def part_chunks(rounds: int, steps: int) -> dict:
    from fastcnn import runtime

    runtime.apply_policy()
    results = {}
    for workload in WORKLOADS:
        variants = {k: make_model(workload, k) for k in (1, 2, 4, 8)}
        for model, ds, batch in variants.values():
            step_times(model, ds, batch, 3)  # compile and fill the workspace
        times = {k: [] for k in variants}
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for k in order:
                times[k] += step_times(*variants[k], steps)
        results[workload] = {k: _summary(t) for k, t in times.items()}
        base = results[workload][1]
        for k, s in results[workload].items():
            ratio = f"{s['min'] / base['min']:.3f}x / {s['median'] / base['median']:.3f}x"
            print(f"{workload:14s} chunks {k}: min {s['min']:.2f} ms, median {s['median']:.2f} ms "
                  f"({ratio} of chunks 1)", flush=True)
    return results


def _summary(times: list[float]) -> dict:
    return {"min": 1e3 * min(times), "median": 1e3 * statistics.median(times), "steps": len(times)}


def worker(workload: str, steps: int, threads: int) -> None:
    """One rank of a ``ranks`` run (started by ``part_ranks`` through mpiexec)."""
    from fastcnn import distributed, runtime

    comm = distributed.world(threads=threads)
    runtime.apply_policy()
    model, ds, batch = make_model(workload, 4, comm)
    plan = distributed.plan_for(model)
    step_times(model, ds, batch, 3, plan)
    reduce_secs = []
    real_reduce = plan._reduce

    def timed_reduce(*args):
        start = time.perf_counter()
        out = real_reduce(*args)
        reduce_secs.append(time.perf_counter() - start)
        return out

    plan._reduce = timed_reduce
    times = step_times(model, ds, batch, steps, plan)
    if comm.Get_rank() == 0:
        out = _summary(times)
        out["reduce_median"] = 1e3 * statistics.median(reduce_secs) if reduce_secs else 0.0
        out["param_bytes"] = int(sum(a.nbytes for a in model.params.values()))
        print("RESULT " + json.dumps(out), flush=True)


def part_ranks(rounds: int, steps: int) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    layouts = [(1, 2), (2, 1), (1, 1)]
    results = {}
    for workload in WORKLOADS:
        runs = {layout: [] for layout in layouts}
        for r in range(rounds):
            for ranks, threads in layouts if r % 2 == 0 else list(reversed(layouts)):
                cmd = [str(mpiexec), "-n", str(ranks), sys.executable, __file__, "--worker", workload,
                       "--steps", str(steps), "--threads", str(threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
                runs[(ranks, threads)].append(json.loads(out.split("RESULT ", 1)[1]))
        results[workload] = {}
        for (ranks, threads), rs in runs.items():
            s = {"min": min(x["min"] for x in rs), "median": statistics.median(x["median"] for x in rs),
                 "reduce_median": statistics.median(x["reduce_median"] for x in rs),
                 "param_bytes": rs[0]["param_bytes"]}
            results[workload][f"{ranks}x{threads}"] = s
            print(f"{workload:14s} {ranks} rank(s) x {threads} thread(s): min {s['min']:.2f} ms, median "
                  f"{s['median']:.2f} ms per step, reduction {s['reduce_median']:.2f} ms, "
                  f"params {s['param_bytes'] / 1e6:.2f} MB", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("chunks", "ranks", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", choices=list(WORKLOADS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.threads)
        return
    print(f"CPU: {cpu_description()}")
    if args.part in ("chunks", "all"):
        part_chunks(args.rounds, args.steps)
    if args.part in ("ranks", "all"):
        part_ranks(max(1, args.rounds // 2), args.steps)


if __name__ == "__main__":
    main()
