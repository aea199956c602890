"""Same-run A/B of the process policy (``fastcnn.runtime``): training-step times before it
moved into one module, after with the policy applied, and after with it switched off.

Variants, each a fresh interpreter per round (the policy is process-wide; its
allocator setting cannot be undone):

- ``before``: the code at ``--before`` (a git revision, checked out into a temporary
  worktree; ``git worktree add`` does not touch this tree), where ``import fastcnn``
  set ``OMP_WAIT_POLICY`` and every model called ``mallopt``;
- ``applied``: this tree, ``runtime.apply_policy()`` first (what training and the
  ``fastcnn`` command do);
- ``off``: this tree after ``runtime.set_policy(enabled=False)``: nothing applied.

Each child builds the two step workloads of ``benchmarks/test_bench_model.py``
(``fastcnn_step``: SimpleConvNet at batch 100, the Office-31 model at batch 32) on
the numba backend (``--backend``), runs ``--warmup`` untimed steps of each, then times ``--steps``
steps of each one by one. The variants' order alternates round by round. Reports the
min and median per workload and variant, and the CPU. Usage::

    python benchmarks/policy_ab.py --before <revision before the change> [--after-tree DIR]
        [--rounds 6 --steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import revision_tree  # noqa: E402

VARIANTS = ("before", "applied", "off")

#: run in the child: argv = variant, warmup, steps, benchmarks folder, backend; prints one JSON line
CHILD = """
import os, sys, time
variant, warmup, steps, backend = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
sys.path.insert(1, sys.argv[4])  # after the working folder: its fastcnn is the one imported
import json
import fastcnn
if variant == "applied":
    fastcnn.runtime.apply_policy()
elif variant == "off":
    fastcnn.runtime.set_policy(enabled=False)
from test_bench_model import STEP_WORKLOADS, fastcnn_step

times = {}
for wid, (_, _, batch, _) in STEP_WORKLOADS.items():
    step = fastcnn_step(wid, backend, batch)
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t0) * 1e3)
    times[wid] = ts
runtime = getattr(fastcnn, "runtime", None)
policy = runtime.policy().__dict__ if runtime is not None and hasattr(runtime, "policy") else None
import numba
print(json.dumps({"file": fastcnn.__file__, "times": times, "policy": policy,
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                  "numba_threads": numba.get_num_threads()}))
"""


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def run_child(variant: str, tree: Path, warmup: int, steps: int, backend: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # each variant's own choice
    env.pop("PYTHONPATH", None)
    bench = tree / "benchmarks"  # the tree's own workloads (test_bench_model.py)
    argv = [sys.executable, "-c", CHILD, variant, str(warmup), str(steps), str(bench), backend]
    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(result["file"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{variant} child imported {result['file']}, not the code in {tree}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git revision of the code before the change")
    parser.add_argument("--after-tree", type=Path, default=ROOT,
                        help="folder of the code after the change (default: this tree)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backend", default="numba", help="fastcnn backend of both workloads")
    args = parser.parse_args(argv)

    with revision_tree(args.before) as worktree:
        trees = {"before": worktree, "applied": args.after_tree, "off": args.after_tree}
        for variant in ("before", "applied"):  # fills each tree's numba cache (a fresh one compiles): untimed
            run_child(variant, trees[variant], 1, 1, args.backend)
        times = {v: {} for v in VARIANTS}
        round_medians = {v: {} for v in VARIANTS}
        seen = {}
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                result = run_child(variant, trees[variant], args.warmup, args.steps, args.backend)
                seen[variant] = result
                for wid, ts in result["times"].items():
                    times[variant].setdefault(wid, []).extend(ts)
                    round_medians[variant].setdefault(wid, []).append(statistics.median(ts))

    wids = list(times["applied"])
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; backend {args.backend}, "
          f"numba threads {seen['applied']['numba_threads']}; "
          f"{args.rounds} rounds x {args.steps} steps per workload and variant, fresh process each, "
          f"order alternating; before = {args.before}, after = {args.after_tree}")
    print()
    print("| variant | " + " | ".join(f"{w} min ms | median ms" for w in wids) + " |")
    print("| --- | " + " | ".join("---: | ---:" for _ in wids) + " |")
    for variant in VARIANTS:
        cells = [f"{min(times[variant][w]):.2f} | {statistics.median(times[variant][w]):.2f}" for w in wids]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print()
    print("median of each round (ms), in round order:")
    for wid in wids:
        for variant in VARIANTS:
            print(f"  {wid} {variant:8s}: " + " ".join(f"{m:6.2f}" for m in round_medians[variant][wid]))
    print()
    for variant in VARIANTS:
        child = seen[variant]
        print(f"{variant}: {child['file']}, OMP_WAIT_POLICY={child['omp_wait_policy']}, "
              f"policy {child['policy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
