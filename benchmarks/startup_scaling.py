"""Start-up cost and thread scaling of whole training steps, each in a fresh process.

Start-up: wall time of ``import fastcnn`` plus building SimpleConvNet and its
first training step (batch 100), with numba's cache cold (an empty
``NUMBA_CACHE_DIR``): by default running the prebuilt build while numba compiles in
the background (``fastcnn.kernels.tiered``; that compile is stopped after the case),
and compiling in the process (``FASTCNN_COLD_START=compile``); then warm (the same
directory again), and on the ``numba-aot`` backend (compiled ahead of time: no numba,
nothing to load or compile).

Scaling: training steps per second (forward, backward, Adam) of SimpleConvNet
(batch 100, 28x28x1) and the seed's Office-31 model (batch 32, 96x96x3) with
1 and 2 threads: ``NUMBA_NUM_THREADS`` for fastcnn, ``torch.set_num_threads``
for PyTorch (skipped when it is not installed). PyTorch runs in both memory
formats (contiguous NCHW and channels_last); a "torch (faster)" row takes, per
thread count, the faster of the two and names it.

Usage::

    python benchmarks/startup_scaling.py [--steps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import TORCH_BACKENDS, cpu_description, split_backend  # noqa: E402

STARTUP_CHILD = textwrap.dedent(
    """
    import sys, time
    t0 = time.perf_counter()
    import numpy as np
    from fastcnn import CnnModel, runtime
    from fastcnn.datasets.base import ArrayDataset
    from fastcnn.zoo import get_preset
    runtime.apply_policy()  # as training does (docs/runtime.md)
    rng = np.random.default_rng(0)
    xs = rng.random((100, 28, 28, 1), dtype=np.float32)
    ys = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    ds = ArrayDataset("s", xs, ys, "select", [str(i) for i in range(10)], split=(1.0, 0.0))
    model = CnnModel("s", ds, None, get_preset("simpleconvnet"), backend=sys.argv[1], seed=1)
    t1 = time.perf_counter()
    _, _, grads = model.compute_step(xs, ys, reuse_grads=True)
    model.optimizer.update(model.params, grads)
    t2 = time.perf_counter()
    print(t1 - t0, t2 - t1, t2 - t0)
    """
)

SCALING_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[4])
    backend, wid, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from bench_common import split_backend
    from test_bench_model import STEP_WORKLOADS, fastcnn_step, torch_step
    batch = STEP_WORKLOADS[wid][2]
    backend, layout = split_backend(backend)
    if backend == "torch":
        import torch
        torch.set_num_threads(int(sys.argv[5]))
        step = torch_step(torch, wid, batch, layout)
    else:
        from fastcnn import runtime
        runtime.apply_policy()  # as training does (docs/runtime.md)
        step = fastcnn_step(wid, backend, batch)
    step(); step()
    times = []
    for _ in range(steps):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    times.sort()
    print(1.0 / times[len(times) // 2])
    """
)


def _run(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        raise RuntimeError(tail)
    return proc


def _python(code: str, *args: str, env: dict | None = None) -> str:
    return _run(code, *args, env=env).stdout.strip().splitlines()[-1]


def _stop_background_compile(stderr: str) -> None:
    """End the compile a prebuilt first run left running (it says its pid), so it does not run
    beside the next measurement."""
    match = re.search(r"in the background \(pid (\d+)", stderr)
    if match:
        with contextlib.suppress(OSError):
            os.kill(int(match.group(1)), signal.SIGTERM)
        time.sleep(0.5)


#: (backend, cache case, FASTCNN_COLD_START, which cache folder); the folders start empty
START_CASES = (
    ("numba", "cold, the prebuilt build there (the default)", "prebuilt", "a"),
    ("numba", "cold, compiling in the process", "compile", "b"),
    ("numba", "warm", "compile", "b"),
    ("numba-aot", "none (compiled ahead)", "compile", "b"),
)


def startup() -> list[dict]:
    """The cases of ``START_CASES``: seconds to import + build, first step, total."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for backend, label, mode, folder in START_CASES:
            env = {"NUMBA_CACHE_DIR": os.path.join(cache, folder), "FASTCNN_COLD_START": mode}
            try:
                proc = _run(STARTUP_CHILD, backend, env=env)
            except RuntimeError as err:
                rows.append({"backend": backend, "case": label, "error": str(err)})
                continue
            _stop_background_compile(proc.stderr)
            imp, first, total = map(float, proc.stdout.strip().splitlines()[-1].split())
            rows.append({"backend": backend, "case": label, "import_build_s": imp, "first_step_s": first,
                         "total_s": total})
    return rows


def scaling(steps: int) -> list[dict]:
    """Median steps/s per workload, backend (torch: per layout, then the faster) and thread count."""
    from test_bench_model import STEP_WORKLOADS

    rows = []
    for wid in STEP_WORKLOADS:
        for backend in ("numba", "numba-aot") + TORCH_BACKENDS:
            row = {"workload": wid, "backend": backend}
            for threads in (1, 2):
                env = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                       "FASTCNN_COLD_START": "compile"}
                try:
                    out = _python(SCALING_CHILD, backend, wid, str(steps), str(HERE), str(threads), env=env)
                    row[f"t{threads}"] = float(out)
                except RuntimeError as err:
                    row[f"t{threads}"] = None
                    row["error"] = str(err)
            rows.append(row)
        rows.append(_faster_torch(rows, wid))
    return rows


def _faster_torch(rows: list[dict], wid: str) -> dict:
    """Per thread count, the torch layout with more steps/s: ``{"t1": .., "layout_t1": .., ...}``."""
    best = {"workload": wid, "backend": "torch (faster)"}
    for key in ("t1", "t2"):
        timed = [(r[key], split_backend(r["backend"])[1]) for r in rows
                 if r["workload"] == wid and r["backend"] in TORCH_BACKENDS and r.get(key) is not None]
        if timed:
            best[key], best[f"layout_{key}"] = max(timed)
        else:
            best[key] = None
            best["error"] = "torch not timed"
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per case (median)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--startup-only", action="store_true", help="skip the thread scaling")
    args = parser.parse_args(argv)
    cpu = cpu_description()
    print(f"CPU: {cpu}\n")

    start = startup()
    print("Start-up: import fastcnn + SimpleConvNet + first training step (batch 100), fresh process\n")
    print("| backend | numba cache | import + build s | first step s | total s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in start:
        if "error" in r:
            print(f"| {r['backend']} | {r['case']} | - | - | skipped: {r['error'][:60]} |")
            continue
        print(f"| {r['backend']} | {r['case']} | {r['import_build_s']:.2f} | {r['first_step_s']:.2f} "
              f"| {r['total_s']:.2f} |")

    if args.startup_only:
        return 0
    scale = scaling(args.steps)
    print("\nThread scaling: training steps per second (median)\n")
    print("| workload | backend | 1 thread | 2 threads | speedup |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in scale:
        if r.get("t1") is None or r.get("t2") is None:
            print(f"| {r['workload']} | {r['backend']} | - | - | skipped: {r.get('error', '')[:50]} |")
            continue
        speedup = r["t2"] / r["t1"]
        t1, t2 = (f"{r[k]:.1f}" + (f" ({r['layout_' + k]})" if f"layout_{k}" in r else "")
                  for k in ("t1", "t2"))
        print(f"| {r['workload']} | {r['backend']} | {t1} | {t2} | {speedup:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "startup": start, "scaling": scale}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
