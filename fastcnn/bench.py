"""The quick backend comparison behind ``fastcnn bench``: kernel timings in one process.

For the full, reproducible suite (pytest-benchmark, PyTorch, whole training
steps) see ``benchmarks/``; this is the one-command overview.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from . import kernels

#: contract function name -> function (a table, not attribute look-ups by string)
KERNELS = {
    "conv2d_forward": kernels.conv2d_forward,
    "conv2d_backward": kernels.conv2d_backward,
    "max_pool_forward": kernels.max_pool_forward,
    "max_pool_backward": kernels.max_pool_backward,
}

#: workload -> (function, x shape [mb, h, w, c], kernel/window, keyword arguments)
WORKLOADS = {
    "conv fwd (SimpleConvNet)": ("conv2d_forward", (100, 28, 28, 1), (5, 5, 1, 30), {"padding": "valid"}),
    "conv bwd (SimpleConvNet)": ("conv2d_backward", (100, 28, 28, 1), (5, 5, 1, 30), {"padding": "valid"}),
    "conv fwd (flowers conv 1)": ("conv2d_forward", (10, 96, 96, 3), (3, 3, 3, 6), {}),
    "conv bwd (flowers conv 2)": ("conv2d_backward", (10, 48, 48, 6), (3, 3, 6, 12), {}),
    "max pool fwd 2x2": ("max_pool_forward", (100, 24, 24, 30), 2, {}),
    "max pool bwd 2x2": ("max_pool_backward", (100, 24, 24, 30), 2, {}),
}
#: images per call for the slow backends; their times are scaled up per image
REDUCED_BATCH = {"better": 2, "adhoc": 1}
QUICK_SCALE = 4  # --quick divides batch and spatial size by this (at least 1 / 4 pixels)


def _bench_inputs(func: str, xshape, kshape, kwargs, rng):
    x = rng.standard_normal(xshape).astype(np.float32)
    if func.startswith("conv"):
        k = (rng.standard_normal(kshape) * 0.1).astype(np.float32)
        if func == "conv2d_forward":
            return (x, k, np.zeros(kshape[3], np.float32))
        y = kernels.conv2d_forward(x, k, np.zeros(kshape[3], np.float32), backend="numpy", **kwargs)
        g_y = rng.standard_normal(y.shape).astype(np.float32)
        return (g_y, x, k)
    if func.endswith("backward"):
        y = kernels.max_pool_forward(x, kshape, backend="numpy", **kwargs)
        return (rng.standard_normal(y.shape).astype(np.float32), x, kshape)
    return (x, kshape)


def _time_call(fn, args, kwargs, repeat: int) -> float:
    fn(*args, **kwargs)  # warm-up: JIT compilation stays out of the numbers
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_rows(backends, repeat: int, quick: bool) -> list[dict]:
    """One dict per workload: shape, and seconds per full-batch call for each backend."""
    rng = np.random.default_rng(0)
    rows = []
    for label, (func, xshape, kshape, kwargs) in WORKLOADS.items():
        if quick:
            n, h, w, c = xshape
            xshape = (max(1, n // QUICK_SCALE), max(4, h // 2), max(4, w // 2), c)
        row = {"workload": label, "shape": _shape_id(xshape, kshape), "times": {}}
        for backend in backends:
            batch = min(xshape[0], REDUCED_BATCH.get(backend, xshape[0]))
            args = _bench_inputs(func, (batch, *xshape[1:]), kshape, kwargs, rng)
            secs = _time_call(KERNELS[func], args, dict(kwargs, backend=backend), repeat)
            row["times"][backend] = (secs * xshape[0] / batch, batch < xshape[0])
        rows.append(row)
    return rows


def _shape_id(xshape, kshape) -> str:
    n, h, w, c = xshape
    k = f"k{kshape[0]}x{kshape[1]}-c{kshape[3]}" if isinstance(kshape, tuple) else f"p{kshape}"
    return f"n{n}-{h}x{w}x{c}-{k}"


def format_table(rows, backends) -> str:
    """Markdown: milliseconds per call for each backend, and each one's slowdown vs the first."""
    head = ["workload", "shape", *[f"{b} ms" for b in backends]]
    if len(backends) > 1:
        head += [f"{b} / {backends[0]}" for b in backends[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        times = row["times"]
        cells = [row["workload"], row["shape"]]
        cells += [f"{times[b][0] * 1e3:.2f}{'*' if times[b][1] else ''}" for b in backends]
        base = times[backends[0]][0]
        cells += [f"{times[b][0] / base:.1f}x" for b in backends[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
