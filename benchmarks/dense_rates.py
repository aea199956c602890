"""The dense layers' products against this machine's square-sgemm rate (the engine issue's item 2).

SimpleConvNet's dense layer at batch 100 runs three products a step: the forward
``x @ w`` (100x4320 @ 4320x100), the weight gradient ``x.T @ g`` (4320x100 @ 100x100) and
the input gradient ``g @ w.T`` (100x100 @ 100x4320). fastcnn runs each as fixed pieces of
single-threaded BLAS calls on its two threads (``fastcnn.kernels.blocked_matmul``); the
reference is a square 1024 sgemm with BLAS's own two threads. The machine's speed moves
from minute to minute on a shared host, so the four are timed in turns, ``--rounds``
times, and each keeps its best round (the min of ``--reps`` calls per round): the
percentages compare figures taken over the same minutes. OpenBLAS with two threads on the
same three products is printed as well.

Then the same products are timed where they run: inside SimpleConvNet's training steps.

Usage::

    python benchmarks/dense_rates.py [--rounds 8 --reps 40 --steps 300 --no-step]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_description  # noqa: E402

from fastcnn.kernels import blocked_matmul  # noqa: E402

#: seconds for OpenBLAS's idle threads to stop spinning (its thread timeout is about 0.1 s)
SETTLE_SECONDS = 0.3


def best_of(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300, help="training steps for the in-step timing")
    parser.add_argument("--no-step", action="store_true", help="skip the in-step timing")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 4320), dtype=np.float32)
    w = rng.standard_normal((4320, 100), dtype=np.float32)
    g = rng.standard_normal((100, 100), dtype=np.float32)
    sq = rng.standard_normal((1024, 1024), dtype=np.float32)
    products = {"forward x @ w": (x, w), "weight grad x.T @ g": (x.T, g), "input grad g @ w.T": (g, w.T)}
    flops = {name: 2.0 * a.shape[0] * a.shape[1] * b.shape[1] for name, (a, b) in products.items()}
    best = {"square": float("inf")}
    for name in products:
        best[f"fastcnn {name}"] = best[f"blas {name}"] = float("inf")
    for _ in range(args.rounds):
        with threadpool_limits(1, "blas"):
            for name, (a, b) in products.items():
                t = best_of(lambda a=a, b=b: blocked_matmul.matmul(a, b, 2), args.reps)
                best[f"fastcnn {name}"] = min(best[f"fastcnn {name}"], t)
        with threadpool_limits(2, "blas"):
            best["square"] = min(best["square"], best_of(lambda: sq @ sq, max(args.reps // 4, 5)))
            for name, (a, b) in products.items():
                best[f"blas {name}"] = min(best[f"blas {name}"], best_of(lambda a=a, b=b: a @ b, args.reps))
        # OpenBLAS's threads spin for a while after a call, holding the second core: let them sleep
        # before the fixed pieces run again (in training BLAS runs single-threaded, no spinning)
        time.sleep(SETTLE_SECONDS)
    square = 2.0 * 1024**3 / best["square"] / 1e9
    print(cpu_description())
    print(f"square 1024 sgemm, BLAS on 2 threads: {square:.0f} GFLOP/s (best of {args.rounds} rounds)")
    for name in products:
        for who in ("fastcnn", "blas"):
            rate = flops[name] / best[f"{who} {name}"] / 1e9
            label = "fastcnn (fixed pieces)" if who == "fastcnn" else "OpenBLAS, 2 threads"
            print(f"  {name:22s} {label:22s} {best[f'{who} {name}'] * 1e3:6.3f} ms {rate:6.0f} GFLOP/s "
                  f"{100 * rate / square:4.0f} % of square")
    if not args.no_step:
        in_training(square, args.steps)
    return 0


def in_training(square: float, steps: int) -> None:
    """The same three products timed inside SimpleConvNet's training steps (numba backend, batch
    100, BLAS single-threaded as training runs it, numba's threads busy around them)."""
    from fastcnn import CnnModel, runtime
    from fastcnn.datasets.base import ArrayDataset
    from fastcnn.zoo import get_preset

    runtime.apply_policy()
    rng = np.random.default_rng(0)
    xs = rng.random((100, 28, 28, 1), dtype=np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    data = ArrayDataset("s", xs, ys, "select", [str(i) for i in range(10)], split=(1.0, 0.0))
    model = CnnModel("s", data, None, get_preset("simpleconvnet"), backend="numba", seed=1)
    times: dict[tuple, list[float]] = {}
    plain = blocked_matmul.matmul

    def timed(a, b, threads, out=None):
        start = time.perf_counter()
        result = plain(a, b, threads, out)
        times.setdefault((a.shape, b.shape), []).append(time.perf_counter() - start)
        return result

    blocked_matmul.matmul = timed
    try:
        for _ in range(steps):
            _, _, grads = model.compute_step(xs, ys, reuse_grads=True)
            model.optimizer.update(model.params, grads)
    finally:
        blocked_matmul.matmul = plain
    print(f"inside {steps} SimpleConvNet training steps (the first 20 left out), median and min:")
    for (a_shape, b_shape), spent in times.items():
        flops = 2.0 * a_shape[0] * a_shape[1] * b_shape[1]
        if flops < 1e7:
            continue
        spent = sorted(spent[20:])
        median, low = spent[len(spent) // 2], spent[0]
        print(f"  {a_shape[0]}x{a_shape[1]} @ {b_shape[0]}x{b_shape[1]}: {median * 1e3:.3f} ms "
              f"({100 * flops / median / 1e9 / square:.0f} % of square), min {low * 1e3:.3f} ms "
              f"({100 * flops / low / 1e9 / square:.0f} %)")


if __name__ == "__main__":
    sys.exit(main())
