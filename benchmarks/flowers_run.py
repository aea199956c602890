"""The book's flowers run, timed here: the 3-conv flower network, batch 10, 10 epochs, fastcnn and PyTorch.

The book's notebook trained this network on the 4,326 Kaggle flower photos at
96x96x3 (80% = 3,460 training images) and took 486 s for 10 epochs (about
140 ms per step). The photos are not shipped here, so this script trains the
same architecture on synthetic data of exactly that size and shape (5 classes).
Speed does not depend on pixel values.

Each run is a fresh process, end to end through the library's own training path:

- fastcnn: ``CnnModel.train`` (shuffled each epoch, then 100 validation samples
  scored), printing the seed's report lines;
- PyTorch (if installed): the same network (``torch_peers.flower``), a plain loop
  with Adam (lr 0.001, eps 1e-7) over the same synthetic training split, batch 10,
  shuffled each epoch, loss and batch accuracy read every step, 100 validation
  samples scored per epoch, ``torch.set_num_threads`` = numba's thread count.
  PyTorch gets its better memory format: by default (``--torch best``) both
  layouts (contiguous NCHW and channels_last) are timed on ``--probe-steps``
  training steps each, in one process, alternating, and the full run uses the
  faster; ``--torch both`` runs the full training in both layouts.

Printed: the CPU (model, AVX2, AVX-512), per-epoch seconds of every run, and
each total against the book's 486 s (projected to the book's 3,460 steps when
``--epochs`` / ``--images`` shrink the run). Before training, each run takes one
warm-up step on a throwaway model (fastcnn: numba's first calls, a JIT compile
or a cache load; PyTorch: its first-call set-up), timed apart ("warm-up s") and
kept out of the epochs; ``--cold`` skips it, so epoch 1 includes those first calls.

Usage::

    python benchmarks/flowers_run.py [--epochs 10] [--images 4326] [--backend numba]
        [--torch best|both|nchw|channels_last|off] [--probe-steps 200] [--json out.json]

``--images`` is the whole synthetic set (the book's 4,326); 80 % of it trains.
Smoke run: ``--epochs 1 --images 400``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import TORCH_LAYOUTS, cpu_description, peer_threads  # noqa: E402

BOOK_SECONDS = 486.0
BOOK_STEPS = 10 * (3460 // 10)  # 10 epochs of 346 steps
FLOWERS = ("daisy", "dandelion", "rose", "sunflower", "tulip")
LEARNING_RATE = 0.001
VALIDATE_COUNT = 100  # fastcnn.train.VALIDATE_COUNT, the seed's
RESULT = "FLOWERS-RESULT "  # prefix of the child's last line (JSON)


def synthetic_flowers(images: int, seed: int = 0):
    """``images`` random 96x96x3 pictures with random flower labels, split 80/5/15 like the book."""
    from fastcnn.datasets.base import ArrayDataset

    rng = np.random.default_rng(seed)
    xs = rng.random((images, 96, 96, 3), dtype=np.float32)
    ys = np.eye(len(FLOWERS), dtype=np.float32)[rng.integers(0, len(FLOWERS), images)]
    return ArrayDataset("flowers-synthetic", xs, ys, "select", list(FLOWERS))


# --------------------------------------------------------------------------
# children: one run each, in a fresh process
# --------------------------------------------------------------------------


def run_fastcnn(args) -> dict:
    """``CnnModel.train`` on the synthetic flowers; per-epoch seconds from its history."""
    from fastcnn import CnnModel, runtime
    from fastcnn.kernels import numba_cpu
    from fastcnn.zoo import get_preset

    runtime.apply_policy()  # this script owns its process, as the fastcnn command does
    ds = synthetic_flowers(args.images)
    warm_up = 0.0
    if not args.cold:  # first calls of every kernel the training runs, on a throwaway model
        start = time.perf_counter()
        spare = CnnModel("warm-up", ds, None, get_preset("flower"), backend=args.backend, seed=2)
        _, _, grads = spare.compute_step(ds.tr_xs[: args.batch_size], ds.tr_ys[: args.batch_size],
                                         reuse_grads=True)
        spare.optimizer.update(spare.params, grads)
        spare.eval_accuracy(ds.va_xs[:2], ds.va_ys[:2])
        warm_up = time.perf_counter() - start
        del spare, grads
    model = CnnModel("flower", ds, None, get_preset("flower"), backend=args.backend, seed=1)
    start = time.perf_counter()
    history = model.train(args.epochs, args.batch_size, LEARNING_RATE, report=1, progress=False)
    total = time.perf_counter() - start
    marks = [0.0] + list(history.seconds)
    return {"run": f"fastcnn {args.backend}", "threads": numba_cpu.num_threads(), "total_s": total,
            "warm_up_s": warm_up,
            "epoch_s": list(np.diff(marks)), "train_count": ds.train_count,
            "steps": len(history.seconds) * max(1, ds.train_count // args.batch_size)}


class TorchRun:
    """The PyTorch twin of the flowers training, in one memory format."""

    def __init__(self, torch, ds, layout: str, batch_size: int):
        import torch_peers

        self.torch, self.ds, self.layout, self.batch_size = torch, ds, layout, batch_size
        self.fmt = torch_peers.MEMORY_FORMATS[layout]
        # the training split converted once to the layout (data preparation, not timed)
        self.xs = torch.from_numpy(ds.tr_xs).permute(0, 3, 1, 2).contiguous(memory_format=self.fmt)
        self.ts = torch.from_numpy(ds.tr_ys.argmax(axis=1))
        torch.manual_seed(1)
        model, self.loss_fn = torch_peers.flower(len(FLOWERS))
        self.model = model.to(memory_format=self.fmt)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE, eps=1e-7)
        self.gen = torch.Generator().manual_seed(1)

    def warm_up(self) -> float:
        """Seconds of one step of a throwaway model on a batch (first-call set-up, kept out of epoch 1)."""
        import torch_peers

        start = time.perf_counter()
        model, loss_fn = torch_peers.flower(len(FLOWERS))
        model = model.to(memory_format=self.fmt)
        opt = self.torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=1e-7)
        idx = self.torch.arange(self.batch_size)
        loss = loss_fn(model(self.xs[idx].contiguous(memory_format=self.fmt)), self.ts[idx])
        loss.backward()
        opt.step()
        with self.torch.no_grad():
            model(self.xs[:2].contiguous(memory_format=self.fmt))
        return time.perf_counter() - start

    def step(self, idx) -> tuple[float, float]:
        """One training step on the training images ``idx``: (loss, batch accuracy)."""
        x = self.xs[idx].contiguous(memory_format=self.fmt)
        t = self.ts[idx]
        self.opt.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = self.loss_fn(out, t)
        loss.backward()
        self.opt.step()
        return loss.item(), (out.argmax(1) == t).float().mean().item()

    def shuffled(self):
        """The batches of one epoch: a fresh permutation, ``train_count // batch_size`` batches."""
        perm = self.torch.randperm(len(self.ts), generator=self.gen)
        n = max(1, len(self.ts) // self.batch_size)
        return [perm[i * self.batch_size : (i + 1) * self.batch_size] for i in range(n)]

    def validate(self) -> float:
        vx, vy = self.ds.get_validate_data(VALIDATE_COUNT)
        x = self.torch.from_numpy(vx).permute(0, 3, 1, 2).contiguous(memory_format=self.fmt)
        with self.torch.no_grad():
            return (self.model(x).argmax(1).numpy() == vy.argmax(axis=1)).mean().item()


def _torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


def run_torch(args) -> dict:
    """The full PyTorch training in ``args.layout``; prints a line per epoch."""
    torch = _torch(peer_threads())
    run = TorchRun(torch, synthetic_flowers(args.images), args.layout, args.batch_size)
    warm_up = 0.0 if args.cold else run.warm_up()
    print(f"PyTorch {torch.__version__} ({args.layout}) train started:", flush=True)
    epoch_s = []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        lap = time.perf_counter()
        costs, accs = np.array([run.step(idx) for idx in run.shuffled()]).T
        valid = run.validate()
        epoch_s.append(time.perf_counter() - lap)
        print(f"    Epoch {epoch}: cost={np.mean(costs):5.3f}, accuracy={np.mean(accs):5.3f}/{valid:5.3f} "
              f"({epoch_s[-1]:.1f}/{time.perf_counter() - start:.1f} secs)", flush=True)
    total = time.perf_counter() - start
    return {"run": f"torch {args.layout}", "threads": torch.get_num_threads(), "total_s": total,
            "warm_up_s": warm_up,
            "epoch_s": epoch_s, "train_count": len(run.ts),
            "steps": args.epochs * max(1, len(run.ts) // args.batch_size)}


def run_probe(args) -> dict:
    """Median ms per training step of each layout: blocks of 25 steps, alternating layouts."""
    torch = _torch(peer_threads())
    ds = synthetic_flowers(args.images)
    runs = {layout: TorchRun(torch, ds, layout, args.batch_size) for layout in TORCH_LAYOUTS}
    times: dict = {layout: [] for layout in TORCH_LAYOUTS}
    batches = {layout: [] for layout in TORCH_LAYOUTS}
    for layout, run in runs.items():  # warm-up, untimed
        for _ in range(5):
            batches[layout] = batches[layout] or run.shuffled()
            run.step(batches[layout].pop())
    while min(len(t) for t in times.values()) < args.probe_steps:
        for layout, run in runs.items():
            for _ in range(min(25, args.probe_steps - len(times[layout]))):
                batches[layout] = batches[layout] or run.shuffled()
                idx = batches[layout].pop()
                t = time.perf_counter()
                run.step(idx)
                times[layout].append(time.perf_counter() - t)
    return {"threads": torch.get_num_threads(), "steps": args.probe_steps,
            "median_ms": {layout: 1e3 * float(np.median(t)) for layout, t in times.items()},
            "min_ms": {layout: 1e3 * float(np.min(t)) for layout, t in times.items()}}


CHILDREN = {"fastcnn": run_fastcnn, "torch": run_torch, "probe": run_probe}


# --------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------


def spawn(args, child: str, layout: str | None = None) -> dict | None:
    """Run one child, echo its output as it comes, return its result (None if it failed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child,
           "--epochs", str(args.epochs), "--images", str(args.images), "--batch-size", str(args.batch_size),
           "--backend", args.backend, "--probe-steps", str(args.probe_steps)] + ["--cold"] * args.cold
    if layout:
        cmd += ["--layout", layout]
    result = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          cwd=HERE.parent) as proc:
        for line in proc.stdout:
            if line.startswith(RESULT):
                result = json.loads(line[len(RESULT):])
            else:
                print(line, end="", flush=True)
    if proc.returncode != 0 or result is None:
        print(f"[{child}{' ' + layout if layout else ''} failed: exit {proc.returncode}, see stderr above]")
        return None
    return result


def _summary(runs: list[dict]) -> None:
    print("\n| run | threads | epochs x steps | warm-up s | total s | ms per step (incl. validation) "
          f"| per-epoch s | projected to the book's {BOOK_STEPS:,} steps "
          f"| book {BOOK_SECONDS:.0f} s / projected |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in runs:
        per_step = r["total_s"] / r["steps"]
        projected = per_step * BOOK_STEPS
        epochs = " / ".join(f"{s:.1f}" for s in r["epoch_s"])
        shape = f"{len(r['epoch_s'])} x {r['steps'] // max(1, len(r['epoch_s']))}"
        print(f"| {r['run']} | {r['threads']} | {shape} | {r['warm_up_s']:.1f} | {r['total_s']:.1f} "
              f"| {per_step * 1e3:.1f} | {epochs} | {projected:.1f} | {BOOK_SECONDS / projected:.1f}x |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--images", type=int, default=4326,
                        help="the whole synthetic set; 80%% of it trains (4326: 3460)")
    parser.add_argument("--backend", default="numba", help="fastcnn backend (default numba)")
    parser.add_argument("--torch", default="best", choices=("best", "both", *TORCH_LAYOUTS, "off"),
                        help="best: probe both layouts, full run with the faster (default); both: full run "
                             "in both; nchw / channels_last: that layout only; off: fastcnn only")
    parser.add_argument("--probe-steps", type=int, default=200, help="timed steps per layout in the probe")
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up step: epoch 1 includes the first calls (numba's JIT or cache load)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=TORCH_LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT + json.dumps(CHILDREN[args.child](args)), flush=True)
        return 0

    cpu = cpu_description()
    train = int(args.images * 0.8)
    print(f"CPU: {cpu}")
    print(f"flowers: {args.epochs} epochs, batch {args.batch_size}, {train} training images of 96x96x3 "
          f"(synthetic; the book: 10 epochs, 3,460 images, {BOOK_SECONDS:.0f} s)\n")
    out = {"cpu": cpu, "epochs": args.epochs, "images": args.images, "batch_size": args.batch_size,
           "runs": []}
    fast = spawn(args, "fastcnn")
    if fast:
        out["runs"].append(fast)

    layouts: tuple = ()
    if args.torch != "off" and importlib.util.find_spec("torch") is None:
        print("\nPyTorch is not installed: its runs are skipped")
    elif args.torch == "best":
        print(f"\nPyTorch layout probe: {args.probe_steps} training steps per layout, alternating blocks")
        probe = spawn(args, "probe")
        if probe:
            out["probe"] = probe
            med, low = probe["median_ms"], probe["min_ms"]
            for layout in TORCH_LAYOUTS:
                print(f"  {layout:13s} median {med[layout]:.1f} ms per step (min {low[layout]:.1f})")
            best = min(med, key=med.get)
            print(f"  faster: {best}; the full run uses it")
            layouts = (best,)
    elif args.torch == "both":
        layouts = TORCH_LAYOUTS
    elif args.torch != "off":
        layouts = (args.torch,)
    for layout in layouts:
        print()
        res = spawn(args, "torch", layout)
        if res:
            out["runs"].append(res)

    print(f"\nCPU: {cpu}")
    _summary(out["runs"])
    torch_runs = [r for r in out["runs"] if r["run"].startswith("torch")]
    if fast and torch_runs:
        best = min(torch_runs, key=lambda r: r["total_s"] / r["steps"])
        ratio = (best["total_s"] / best["steps"]) / (fast["total_s"] / fast["steps"])
        print(f"\nPyTorch at its faster layout ({best['run'].split()[1]}) / {fast['run']}, time per step: "
              f"{ratio:.2f}x (> 1: fastcnn is faster)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
