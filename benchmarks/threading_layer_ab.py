"""A/B of numba's threading layers on whole training steps: what fork safety costs.

fastcnn runs numba's parallel kernels on the TBB layer (fork-safe) where the
``tbb`` wheel is installed, instead of GNU OpenMP (``omp``, not fork-safe).
This times the same steps under each layer, each in a fresh process
(``NUMBA_THREADING_LAYER``: a layer is chosen once per process), the layers
alternating round by round so that drift on a shared machine hits both alike.
Every process also checks the layer it really ran on.

Usage::

    python benchmarks/threading_layer_ab.py [--rounds 5] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: variant -> (NUMBA_THREADING_LAYER, extra environment). On OpenMP fastcnn's process policy
#: sets OMP_WAIT_POLICY=PASSIVE (fastcnn.runtime); "omp-active" shows OpenMP's own default.
LAYERS = {
    "omp": ("omp", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "omp-active": ("omp", {"OMP_WAIT_POLICY": "ACTIVE"}),
    "tbb": ("tbb", {}),
    "workqueue": ("workqueue", {}),
}

CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[3])
    wid, steps = sys.argv[1], int(sys.argv[2])
    import numba
    from fastcnn import runtime
    runtime.apply_policy()  # as training does
    from test_bench_model import STEP_WORKLOADS, fastcnn_step
    step = fastcnn_step(wid, "numba", STEP_WORKLOADS[wid][2])
    step(); step()
    times = []
    for _ in range(steps):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    print(numba.threading_layer(), *times)
    """
)

#: the workloads timed: the benchmark suite's steps and the book's flowers network at batch 10
WORKLOADS = ("simpleconvnet-n100-28x28x1", "office31-n32-96x96x3")


def run_once(variant: str, wid: str, steps: int, threads: int) -> tuple[str, list[float]]:
    layer, extra = LAYERS[variant]
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": str(threads), **extra}
    proc = subprocess.run([sys.executable, "-c", CHILD, wid, str(steps), str(HERE)], capture_output=True,
                          text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant}/{wid}: {proc.stderr.strip().splitlines()[-1:]}")
    used, *times = proc.stdout.split()
    return used, [float(t) for t in times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from bench_common import cpu_description

    print(f"CPU: {cpu_description()}")
    for wid in WORKLOADS:
        times: dict[str, list[float]] = {layer: [] for layer in LAYERS}
        used = {}
        for r in range(args.rounds):
            order = list(LAYERS) if r % 2 == 0 else list(LAYERS)[::-1]
            for layer in order:
                used[layer], t = run_once(layer, wid, args.steps, args.threads)
                times[layer] += t
        base = statistics.median(times["omp"])
        print(f"{wid}, {args.threads} threads, {args.rounds} rounds x {args.steps} steps:")
        for layer in LAYERS:
            med, low = statistics.median(times[layer]), min(times[layer])
            print(f"  {layer:10s} (ran on {used[layer]:9s}) min {low * 1e3:7.2f} ms"
                  f"  median {med * 1e3:7.2f} ms  median / omp {med / base:5.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
