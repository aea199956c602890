"""A/B in one process: fused conv + activation + pooling against layer by layer.

Whole training steps (``compute_step`` + Adam) of SimpleConvNet (batch 100,
28x28x1) and the seed's Office-31 model (batch 32, 96x96x3), each built twice
with the same seed: ``CnnModel(fuse=True)`` (the default) and ``fuse=False``.
Then the kernels of every fused pair in those models: the unfused chain (conv
forward, ReLU, pooling; pooling's, ReLU's and the conv's backward) and the two
fused calls that replace it. A and B alternate in every round (the machine may
be shared); each call is timed on its own; min and median are printed.

Usage (the issue's figures: two threads)::

    NUMBA_NUM_THREADS=2 python benchmarks/fused_ab.py [--backends numba numba-aot]
"""

from __future__ import annotations

import argparse
import time


def _timed(fn, times: list, reps: int) -> None:
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)


def _interleaved(calls: dict, rounds: int, reps: int) -> dict:
    """{name: [ms, ...]}: every call ``reps`` times per round, the order reversed every other round."""
    for fn in calls.values():  # compile and warm up
        fn()
        fn()
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            _timed(calls[name], times[name], reps)
    return times


def _row(label: str, ts: list) -> str:
    import numpy as np

    return f"| {label} | {min(ts):.2f} | {np.median(ts):.2f} |"


def steps(backend: str, rounds: int, reps: int) -> None:
    from test_bench_model import STEP_WORKLOADS, fastcnn_step

    print(f"\nwhole steps, {backend} (compute_step + Adam), {rounds} rounds x {reps} steps, "
          "interleaved")
    print("| workload | fused min ms | fused median ms | layers min ms | layers median ms | min ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for wid, (_, _, batch, _) in STEP_WORKLOADS.items():
        calls = {fuse: fastcnn_step(wid, backend, batch, fuse) for fuse in (True, False)}
        times = _interleaved(calls, rounds, reps)
        import numpy as np

        f, u = times[True], times[False]
        print(f"| {wid} | {min(f):.2f} | {np.median(f):.2f} | {min(u):.2f} | {np.median(u):.2f} | "
              f"{min(f) / min(u):.2f} |")


def _pair_calls(ops, conv, pool, batch: int, input_grad: bool, rng) -> dict:
    """name -> call: the unfused chain's kernels and the two fused ones, for one conv + pooling pair."""
    import numpy as np

    kind = "max" if pool.spec.type == "max" else "avg"
    act, k, b = conv.spec.actfunc, conv.params["k"], conv.params["b"]
    x = rng.standard_normal((batch, *conv.input_shape)).astype(np.float32)
    c = ops.conv2d_forward(x, k, b, conv.geo)
    a = ops.relu_forward(c) if act == "relu" else c.copy()
    pool_fwd = ops.max_pool_forward if kind == "max" else ops.avg_pool_forward
    pool_bwd = ops.max_pool_backward if kind == "max" else ops.avg_pool_backward
    y = pool_fwd(a, pool.geo)
    g = rng.standard_normal(y.shape).astype(np.float32)
    g_a = pool_bwd(g, a, pool.geo)
    g_c = ops.relu_backward(g_a, a) if act == "relu" else g_a
    y_f, code = ops.conv_pool_forward(x, k, b, conv.geo, act, kind, pool.geo)
    g_x = np.empty_like(x) if input_grad else None
    calls = {
        "conv fwd": lambda: ops.conv2d_forward(x, k, b, conv.geo, out=c),
        "relu fwd": lambda: ops.relu_forward(c, out=a),
        "pool fwd": lambda: pool_fwd(a, pool.geo, out=y),
        "pool bwd": lambda: pool_bwd(g, a, pool.geo, out=g_a),
        "relu bwd": lambda: ops.relu_backward(g_a, a, out=g_c),
        "conv bwd": lambda: ops.conv2d_backward(g_c, x, k, conv.geo, input_grad, out=g_x),
        "fused fwd": lambda: ops.conv_pool_forward(x, k, b, conv.geo, act, kind, pool.geo, out=y_f,
                                                   code=code),
        "fused bwd": lambda: ops.conv_pool_backward(g, code, x, k, conv.geo, act, kind, pool.geo, input_grad,
                                                    out=g_x),
    }
    if act != "relu":
        del calls["relu fwd"], calls["relu bwd"]
    return calls


def kernels(backend: str, rounds: int, reps: int) -> None:
    """The fused pairs of both workloads: the unfused chain's kernels and the fused two."""
    import numpy as np
    from test_bench_model import STEP_WORKLOADS, synthetic_dataset

    from fastcnn import CnnModel
    from fastcnn.steps import ConvPoolStep
    from fastcnn.zoo import get_preset

    print(f"\nkernels of the fused pairs, {backend}, {rounds} rounds x {reps} calls, interleaved "
          "(min / median ms)")
    names = ("conv fwd", "relu fwd", "pool fwd", "pool bwd", "relu bwd", "conv bwd")
    print("| pair | " + " | ".join(names) + " | layers fwd + bwd | fused fwd | fused bwd | fused fwd + bwd |")
    print("| --- | " + " | ".join(["---:"] * 10) + " |")
    rng = np.random.default_rng(0)
    for wid, (preset, shape, batch, spec) in STEP_WORKLOADS.items():
        data = synthetic_dataset(shape, batch, spec)
        model = CnnModel(wid, data, None, get_preset(preset), backend=backend, seed=1)
        for index, step in enumerate(model.steps):
            if not isinstance(step, ConvPoolStep):
                continue
            conv, pool = step.layers
            # as in training: the first layer skips its input gradient
            times = _interleaved(_pair_calls(model.ops, conv, pool, batch, index > 0, rng), rounds, reps)
            cell = {name: f"{min(ts):.2f} / {np.median(ts):.2f}" for name, ts in times.items()}
            layers = sum(min(ts) for name, ts in times.items() if not name.startswith("fused"))
            fused = min(times["fused fwd"]) + min(times["fused bwd"])
            label = f"{wid.split('-')[0]} {conv.key} + {pool.spec.type} ({conv.spec.actfunc})"
            print(f"| {label} | " + " | ".join(cell.get(n, "-") for n in names)
                  + f" | {layers:.2f} | {cell['fused fwd']} | {cell['fused bwd']} | {fused:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=15, help="steps (or kernel calls) per round and side")
    parser.add_argument("--backends", nargs="+", default=["numba", "numba-aot"])
    args = parser.parse_args(argv)

    from bench_common import cpu_description

    from fastcnn import runtime
    from fastcnn.kernels import backend_available

    runtime.apply_policy()  # as training does (docs/runtime.md)
    print(f"CPU: {cpu_description()}; threads: {runtime.num_threads()}")
    for backend in args.backends:
        if not backend_available(backend):
            print(f"\n{backend}: not available here (numba-aot: make aot)")
            continue
        steps(backend, args.rounds, args.steps)
        kernels(backend, args.rounds, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
