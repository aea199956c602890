"""A/B in one process: the SimpleConvNet training step with buffer reuse on and off.

Two models with the same seed (``workspace`` on and set to None) train on the
same batches: ``--rounds`` rounds of ``--steps`` steps each, the order of the two
alternating per round; every step (``compute_step`` + Adam update) is timed on
its own. Then it counts the allocations of 1 MiB or more that one step makes,
with a malloc wrapper preloaded into the process (it sees NumPy's, numba's and
Python's allocations alike; compiled here with ``cc``, skipped without one).

Usage (one numba thread damps the noise of other load on the machine)::

    NUMBA_NUM_THREADS=1 python benchmarks/step_buffers_ab.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

SHIM_C = r"""
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
#define RING 1024
long big_count = 0;                /* allocations of at least big_threshold bytes */
unsigned long big_threshold = 1UL << 20;
unsigned long big_sizes[RING];     /* their sizes, the last RING of them */
static void note(size_t n) {
    if (n >= big_threshold) {
        long i = __atomic_fetch_add(&big_count, 1, __ATOMIC_RELAXED);
        big_sizes[i % RING] = n;
    }
}
void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    void *r;
    note(n);
    r = __libc_memalign(a, n);
    if (!r) return 12; /* ENOMEM */
    *p = r;
    return 0;
}
"""

ENV_SHIM = "FASTCNN_AB_SHIM"


def _relaunch_with_shim() -> int | None:
    """Compile the malloc wrapper and rerun this script with it preloaded; None if not possible."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if os.environ.get(ENV_SHIM) is not None or cc is None or not sys.platform.startswith("linux"):
        return None
    tmp = tempfile.mkdtemp(prefix="step_ab_")
    src, lib = os.path.join(tmp, "bigalloc.c"), os.path.join(tmp, "bigalloc.so")
    with open(src, "w") as fh:
        fh.write(SHIM_C)
    if subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src], check=False).returncode != 0:
        return None
    env = dict(os.environ, **{ENV_SHIM: lib})
    env["LD_PRELOAD"] = " ".join(filter(None, [lib, os.environ.get("LD_PRELOAD")]))
    try:
        return subprocess.run([sys.executable, *sys.argv], env=env, check=False).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _counters():
    """(count(), sizes(n)) of the preloaded wrapper, or None when it is not loaded."""
    path = os.environ.get(ENV_SHIM)
    if not path:
        return None
    import ctypes

    lib = ctypes.CDLL(path)  # the preloaded copy: the same counters
    count = ctypes.c_long.in_dll(lib, "big_count")
    sizes = (ctypes.c_ulong * 1024).in_dll(lib, "big_sizes")
    return (lambda: count.value), (lambda start, stop: [sizes[i % 1024] for i in range(start, stop)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    relaunched = _relaunch_with_shim()
    if relaunched is not None:
        return relaunched

    import numba
    import numpy as np

    from fastcnn import CnnModel, runtime
    from fastcnn.datasets.base import ArrayDataset
    from fastcnn.zoo import get_preset

    runtime.apply_policy()  # as training does (docs/runtime.md)
    rng = np.random.default_rng(0)
    n_batches = 10
    xs = rng.random((n_batches * args.batch, 28, 28, 1), dtype=np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(xs))]
    batches = [(xs[i : i + args.batch], ys[i : i + args.batch]) for i in range(0, len(xs), args.batch)]
    ds = ArrayDataset("synthetic", xs[:300], ys[:300], "select", [str(i) for i in range(10)])
    models = {
        "reuse": CnnModel("reuse", ds, None, get_preset("simpleconvnet"), backend="numba", seed=1),
        "fresh": CnnModel("fresh", ds, None, get_preset("simpleconvnet"), backend="numba", seed=1),
    }
    models["fresh"].workspace = None
    done = dict.fromkeys(models, 0)

    def step(name):
        model = models[name]
        x, y = batches[done[name] % n_batches]
        _, _, grads = model.compute_step(x, y, reuse_grads=True)
        model.optimizer.update(model.params, grads)
        done[name] += 1

    for name in models:  # compile and warm up
        for _ in range(5):
            step(name)
    times = {name: [] for name in models}
    for r in range(args.rounds):
        for name in (("reuse", "fresh") if r % 2 == 0 else ("fresh", "reuse")):
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step(name)
                times[name].append((time.perf_counter() - t0) * 1e3)
    reuse_params, fresh_params = models["reuse"].params, models["fresh"].params
    same = all(np.array_equal(reuse_params[k], fresh_params[k]) for k in fresh_params)

    from bench_common import cpu_description

    print(f"CPU: {cpu_description()}")
    print(f"SimpleConvNet step (compute_step + Adam), batch {args.batch} of 28x28x1 float32, "
          f"numba threads {numba.get_num_threads()}, {args.rounds} rounds x {args.steps} steps, interleaved")
    print("| variant | min ms | median ms | mean ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} | {np.median(ts):.2f} | {np.mean(ts):.2f} |")
    print(f"parameters bit-identical after {done['reuse']} steps each: {same}")
    ws = models["reuse"].workspace
    print(f"workspace: {len(ws.arrays())} arrays, {ws.nbytes / 2**20:.1f} MiB, {ws.allocations} allocations")

    counters = _counters()
    if counters is None:
        print("allocations >= 1 MiB: not counted (no C compiler, or not Linux)")
        return 0
    count, sizes = counters
    for name in models:
        per_step = []
        for _ in range(3):
            c0 = count()
            step(name)
            c1 = count()
            per_step.append(c1 - c0)
        mib = ", ".join(f"{s / 2**20:.2f}" for s in sorted(sizes(c0, c1), reverse=True))
        print(f"allocations >= 1 MiB per step, {name}: {per_step} (last step, MiB: {mib})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
