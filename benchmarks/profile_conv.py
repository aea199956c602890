"""Where a conv training step (forward + backward) spends its time: numba vs numpy.

Usage: ``python benchmarks/profile_conv.py [--workload n32-96x96x3-k3-c6] [--top 12]``

Prints the cProfile top entries of a few steps per backend, then a manual
breakdown: for the numpy path the im2col gather, the three matmuls and the
col2im scatter; for the numba path the whole parallel kernels (their inner
phases run inside one compiled call, so the split comes from timing the same
phases one image at a time on one thread; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np

from fastcnn import kernels as K
from fastcnn.kernels import im2col, numba_cpu
from fastcnn.kernels.shapes import conv_geometry

WORKLOADS = {
    "n100-28x28x1-k5-c30": ((100, 28, 28, 1), 5, 30, "valid"),
    "n32-96x96x3-k3-c6": ((32, 96, 96, 3), 3, 6, "same"),
    "n32-48x48x6-k3-c12": ((32, 48, 48, 6), 3, 12, "same"),
    "n32-24x24x12-k3-c24": ((32, 24, 24, 12), 3, 24, "same"),
}


def best(fn, reps: int = 5) -> float:
    """Fastest of ``reps`` timed calls after one untimed call, in seconds."""
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="n32-96x96x3-k3-c6", choices=list(WORKLOADS))
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    shape, ks, ychn, pad = WORKLOADS[args.workload]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    k = (0.1 * rng.standard_normal((ks, ks, shape[3], ychn))).astype(np.float32)
    b = np.zeros(ychn, np.float32)
    geo = conv_geometry(shape, ks, ks, 1, pad)
    g_y = rng.standard_normal((shape[0], geo.yh, geo.yw, ychn)).astype(np.float32)
    from bench_common import cpu_description

    print(f"CPU: {cpu_description()}")
    print(f"workload {args.workload}, numba threads {numba_cpu.num_threads()}")
    numba = numba_cpu.BACKEND

    for backend in ("numba", "numpy"):

        def step(backend=backend):
            K.conv2d_forward(x, k, b, 1, pad, backend=backend)
            K.conv2d_backward(g_y, x, k, 1, pad, backend=backend)

        step()  # JIT / cache load out of the profile
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            step()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
        print(f"\n=== cProfile, backend {backend}, 3 steps (sorted by own time) ===")
        print(buf.getvalue().split("\n\n", 1)[-1].strip())

    print("\n=== manual breakdown, one step (best of 5), ms ===")
    kf = k.reshape(-1, ychn)
    cols = im2col.ext_regions(x, geo)
    g = g_y.reshape(-1, ychn)
    gcols = g @ kf.T
    parts = {
        "numpy: gather ext_regions (x2: fwd and bwd)": 2 * best(lambda: im2col.ext_regions(x, geo)),
        "numpy: gemm cols @ k": best(lambda: cols @ kf),
        "numpy: gemm cols.T @ g (g_k)": best(lambda: cols.T @ g),
        "numpy: gemm g @ k.T (g_x cols)": best(lambda: g @ kf.T),
        "numpy: scatter undo_ext_regions": best(lambda: im2col.undo_ext_regions(gcols, x.shape, geo)),
        "numba: gather ext_regions (parallel, for comparison)": best(lambda: numba.ext_regions(x, geo)),
        "numba: scatter undo_ext_regions (parallel)": best(
            lambda: numba.undo_ext_regions(gcols, x.shape, geo)
        ),
        "numba: conv2d_forward (whole kernel)": best(lambda: numba.conv2d_forward(x, k, b, geo)),
        "numba: conv2d_backward (whole kernel)": best(lambda: numba.conv2d_backward(g_y, x, k, geo)),
    }
    width = max(map(len, parts))
    for name, t in parts.items():
        print(f"{name:<{width}}  {t * 1e3:8.2f}")


if __name__ == "__main__":
    main()
