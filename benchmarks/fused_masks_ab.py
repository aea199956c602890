"""A/B in one process: dropout / noise fused into the conv + pooling step, or run on their own.

The book's chapter-8 flower stacks (``ch8_compare.RUNS``, 96x96x3, batch 10): ``flowers_cnn_2``
(dropout after each pool) and ``flowers_cnn_3`` (noise before each conv, i.e. after the previous
pool), each built three times with the same seed and stepped on the same batch (``compute_step``
+ Adam): ``layers`` (``fuse=False``: every layer on its own), ``conv+pool`` (conv and pooling
fused, the dropout or noise its own kernel: ``plan_steps(..., masks=False)``, the state before
the masks were fused) and ``conv+pool+mask`` (the default). The variants take turns in every
round, the order reversed every other round; min and median ms per step are printed.

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/fused_masks_ab.py [--rounds 8] [--steps 10] [--backend numba]
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np


def _variants(hconfigs, backend: str, batch: int) -> dict:
    from ch8_compare import synthetic_flowers

    from fastcnn import CnnModel
    from fastcnn.steps import plan_steps

    ds = synthetic_flowers(max(batch, 20))
    x, y = ds.tr_xs[:batch], ds.tr_ys[:batch]
    masks_knob = "masks" in inspect.signature(plan_steps).parameters  # absent before the masks fused
    models = {"layers": CnnModel("ab", ds, None, hconfigs, backend=backend, seed=1, fuse=False)}
    fused = CnnModel("ab", ds, None, hconfigs, backend=backend, seed=1)
    if masks_knob:
        split = CnnModel("ab", ds, None, hconfigs, backend=backend, seed=1)
        split.steps = plan_steps(split.layers, split.ops, masks=False)
        models["conv+pool"] = split
        models["conv+pool+mask"] = fused
    else:
        models["conv+pool"] = fused

    def stepper(model):
        def step():
            _, _, grads = model.compute_step(x, y, reuse_grads=True)
            model.optimizer.update(model.params, grads)
        return step

    return {name: stepper(model) for name, model in models.items()}


def _interleaved(calls: dict, rounds: int, reps: int) -> dict:
    for fn in calls.values():  # compile and warm up
        fn()
        fn()
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            for _ in range(reps):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per round and variant")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--runs", default="flowers_cnn_2,flowers_cnn_3")
    args = parser.parse_args(argv)

    from bench_common import cpu_description
    from ch8_compare import RUNS

    from fastcnn import runtime

    runtime.apply_policy()  # as training does (docs/runtime.md)
    print(f"CPU: {cpu_description()}; threads: {runtime.num_threads()}; backend {args.backend}, "
          f"batch {args.batch}, {args.rounds} rounds x {args.steps} steps, variants in turns")
    print("| stack | variant | min ms | median ms |")
    print("| --- | --- | ---: | ---: |")
    for run in args.runs.split(","):
        times = _interleaved(_variants(RUNS[run][0], args.backend, args.batch), args.rounds, args.steps)
        for name, ts in times.items():
            print(f"| {run} | {name} | {min(ts):.2f} | {np.median(ts):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
