"""fastcnn against PyTorch at its faster layout, step by step, in fresh processes taking turns.

The engine issue's speed targets compare one training step (forward, backward, one Adam
update) of fastcnn's numba backend with PyTorch's at its faster memory format, on the same
input. In one process the two disturb each other (PyTorch's OpenMP threads keep spinning
after its steps, and whichever runs first warms the caches), and on a shared machine a
single run moves by tens of percent. So every (variant, round) here is a fresh
interpreter, the variants take turns round by round (the order alternates), and the
report gives the min and the median over all rounds' steps, and the ratio against the
faster PyTorch layout on both. Each child runs ``--warmup`` untimed steps, then times
``--steps`` steps one by one, on 2 threads (``--threads``).

Workloads: SimpleConvNet at batch 100 (28x28x1, 10 classes), the book's flowers network
at batch 10 (96x96x3, 5 classes), the seed's Office-31 model at batch 32. Without PyTorch
only fastcnn's rows are printed.

Usage::

    python benchmarks/peer_ab.py [--rounds 6 --steps 30 --workloads simpleconvnet,flowers10]
    python benchmarks/peer_ab.py --aot --no-torch   # the numba JIT against the numba-aot build
    python benchmarks/peer_ab.py --before HEAD~1 --no-torch   # this tree against a revision
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import cpu_description, revision_tree  # noqa: E402

#: name -> (fastcnn preset, input shape HWC, batch, classes, torch builder)
WORKLOADS = {
    "simpleconvnet": ("simpleconvnet", (28, 28, 1), 100, 10, "simpleconvnet"),
    "flowers10": ("flower", (96, 96, 3), 10, 5, "flower"),
    "office31": ("office31", (96, 96, 3), 32, 34, "office31"),
}
TORCH_LAYOUTS = ("nchw", "channels_last")
LABELS = {"fastcnn": "fastcnn (numba)", "fastcnn-aot": "fastcnn (numba-aot)",
          "fastcnn-before": "fastcnn (numba), --before"}

CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    variant, preset, h, w, c, mb, classes, builder, warmup, steps, threads = sys.argv[2:13]
    h, w, c, mb, classes, warmup, steps, threads = map(int, (h, w, c, mb, classes, warmup, steps, threads))
    import numpy as np
    BACKENDS = {"fastcnn": "numba", "fastcnn-aot": "numba-aot", "fastcnn-before": "numba"}
    times = []
    if variant.startswith("fastcnn"):
        from fastcnn import CnnModel, runtime
        from fastcnn.datasets.base import ArrayDataset
        from fastcnn.zoo import get_preset
        runtime.apply_policy()
        runtime.set_num_threads(threads)
        rng = np.random.default_rng(0)
        xs = rng.random((mb, h, w, c), dtype=np.float32)
        ys = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, mb)]
        mode = "dual_select" if preset == "office31" else "select"
        if mode == "dual_select":
            ys = np.concatenate([np.eye(3, dtype=np.float32)[rng.integers(0, 3, mb)],
                                 np.eye(31, dtype=np.float32)[rng.integers(0, 31, mb)]], axis=1)
        ds = ArrayDataset("s", xs, ys, mode, [str(i) for i in range(classes)], split=(1.0, 0.0))
        model = CnnModel("s", ds, None, get_preset(preset), backend=BACKENDS[variant], seed=1)
        def step():
            _, _, grads = model.compute_step(xs, ys, reuse_grads=True)
            model.optimizer.update(model.params, grads)
    else:
        import torch
        import torch_peers
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model, loss_fn = getattr(torch_peers, builder)()
        run = torch_peers.make_step(model, loss_fn, variant)
        x = torch_peers.nchw_input(mb, c, h, w, variant)
        g = torch.Generator().manual_seed(1)
        if builder == "office31":
            t = (torch.randint(0, 3, (mb,), generator=g), torch.randint(0, 31, (mb,), generator=g))
        else:
            t = torch.randint(0, classes, (mb,), generator=g)
        def step():
            run(x, t)
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps(times))
    """
)


def torch_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return probe.returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--aot", action="store_true",
                        help="also time the numba-aot backend (the kernels compiled ahead of time)")
    parser.add_argument("--no-torch", action="store_true", help="time fastcnn only")
    parser.add_argument("--before", metavar="REV",
                        help="also time the numba backend of git revision REV (checked out into a temporary "
                             "worktree; this tree is not touched)")
    parser.add_argument("--workloads", default="simpleconvnet,flowers10",
                        help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; valid: {', '.join(WORKLOADS)}")
    torch_layouts = list(TORCH_LAYOUTS) if not args.no_torch and torch_available() else []
    variants = (["fastcnn"] + (["fastcnn-aot"] if args.aot else [])
                + (["fastcnn-before"] if args.before else []) + torch_layouts)
    with contextlib.ExitStack() as stack:
        before = stack.enter_context(revision_tree(args.before)) if args.before else None
        _run(args, names, variants, torch_layouts, before)
    return 0


def _run(args, names, variants, torch_layouts, before) -> None:
    print(cpu_description())
    print(f"{args.rounds} rounds x {args.steps} steps, {args.threads} threads, "
          "fresh process per round and variant")
    for name in names:
        preset, (h, w, c), mb, classes, builder = WORKLOADS[name]
        times = {v: [] for v in variants}
        for r in range(args.rounds):
            for variant in (variants if r % 2 == 0 else variants[::-1]):
                code = CHILD if variant != "fastcnn-before" else (
                    f"import sys; sys.path.insert(0, {str(before)!r})\n" + CHILD)
                out = subprocess.run(
                    [sys.executable, "-c", code, str(HERE), variant, preset, str(h), str(w), str(c), str(mb),
                     str(classes), builder, str(args.warmup), str(args.steps), str(args.threads)],
                    capture_output=True, text=True, check=True)
                times[variant] += json.loads(out.stdout.splitlines()[-1])
        stats = {v: (min(t) * 1e3, statistics.median(t) * 1e3) for v, t in times.items()}
        print(f"\n{name} (batch {mb}, {h}x{w}x{c}): min / median ms per step")
        for v, (lo, med) in stats.items():
            label = LABELS.get(v, f"PyTorch {v}")
            print(f"  {label:24s} {lo:8.2f} {med:8.2f}")
        if args.before:
            old, new = stats["fastcnn-before"], stats["fastcnn"]
            print(f"  {args.before} / this tree: {old[0] / new[0]:.2f} on the min, "
                  f"{old[1] / new[1]:.2f} on the median")
        if args.aot:
            print(f"  numba-aot / numba: {stats['fastcnn-aot'][0] / stats['fastcnn'][0]:.2f} on the min, "
                  f"{stats['fastcnn-aot'][1] / stats['fastcnn'][1]:.2f} on the median")
        if torch_layouts:
            best = min(TORCH_LAYOUTS, key=lambda v: stats[v][0])
            lo, med = stats["fastcnn"]
            print(f"  faster PyTorch layout: {best}; fastcnn is {stats[best][0] / lo:.2f}x faster "
                  f"on the min, {stats[best][1] / med:.2f}x on the median")


if __name__ == "__main__":
    sys.exit(main())
