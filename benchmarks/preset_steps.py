"""Training steps of the chapter 8-9 presets per backend, and of their PyTorch twins.

Workloads (synthetic data of each preset's own input shape; speed does not depend on
pixel values):

- ``deepconvnet`` (Deep Learning from Scratch ch. 8) at batch 100 on 28x28x1;
- the book's chapter 9 flower networks at batch 10 (the book's batch): ``inception_flower``
  and ``inception_flower_la`` on 96x96x3, ``plain_flower``, ``residual_flower`` and
  ``bottleneck_flower`` on 64x64x3;
- the book's chapter 8 flower stacks at batch 10 on 96x96x3 (``ch8_compare.RUNS``):
  ``flowers_cnn_1`` (base), ``_2`` (dropout), ``_3`` (noise), ``_4`` (batch_normal).

One step is ``compute_step`` (forward and backward in training mode: dropout and noise
draw their masks, batch norm uses batch statistics) and one Adam update. PyTorch runs
the model's twin (``fastcnn.interop.to_torch_module``, in training mode, Adam with the
same eps, ``torch_peers.make_step``) in both memory formats, NCHW and channels_last;
the faster is compared and named. A preset whose layers have no twin (batch norm,
noise, composite layers) gets no PyTorch row, and the table says which layer stops it.

``benchmarks/test_bench_presets.py`` times the same steps under pytest-benchmark
(``pytest benchmarks --benchmark``); this script prints one markdown table, with the CPU:

    python benchmarks/preset_steps.py [--workloads deepconvnet,residual_flower]
        [--backends numba,numba-aot,numpy,torch] [--rounds 10] [--batch N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_common import TORCH_LAYOUTS, cpu_description, peer_threads

#: chapter 8 variants: ``ch8_compare.RUNS`` names
CH8_RUNS = ("flowers_cnn_1", "flowers_cnn_2", "flowers_cnn_3", "flowers_cnn_4")
#: chapter 9 presets of ``fastcnn.zoo`` (input shape from ``zoo.PRESET_INPUTS``)
CH9_PRESETS = ("inception_flower", "inception_flower_la", "plain_flower", "residual_flower",
               "bottleneck_flower")
FASTCNN_BACKENDS = ("numba", "numba-aot", "numpy")


def workloads() -> dict[str, tuple[str, list, tuple, int, int]]:
    """id -> (name, hconfigs, input shape HWC, batch, classes)."""
    from ch8_compare import RUNS

    from fastcnn.zoo import PRESET_INPUTS, get_preset

    out = {"deepconvnet-n100-28x28x1": ("deepconvnet", get_preset("deepconvnet"), (28, 28, 1), 100, 10)}
    for name in CH9_PRESETS:
        shape = PRESET_INPUTS[name]
        out[f"{name}-n10-{'x'.join(map(str, shape))}"] = (name, get_preset(name), shape, 10, 5)
    for name in CH8_RUNS:
        out[f"{name}-n10-96x96x3"] = (name, RUNS[name][0], (96, 96, 3), 10, 5)
    return out


WORKLOADS = workloads()


def synthetic(shape, batch: int, classes: int, seed: int = 0):
    """``batch`` random images (at least 3) with random one-hot targets, all in the training split."""
    from fastcnn.datasets.base import ArrayDataset

    rng = np.random.default_rng(seed)
    n = max(batch, 3)
    xs = rng.random((n, *shape), dtype=np.float32)
    ys = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return ArrayDataset("synthetic", xs, ys, "select", [str(i) for i in range(classes)], split=(1.0, 0.0))


def build(wid: str, backend: str, batch: int | None = None):
    """``(model, x, y)``: the workload's model on ``backend`` (seed 1) and one batch."""
    from fastcnn import CnnModel

    name, hconfigs, shape, full_batch, classes = WORKLOADS[wid]
    batch = batch or full_batch
    ds = synthetic(shape, batch, classes)
    model = CnnModel(name, ds, None, hconfigs, backend=backend, seed=1)
    return model, ds.tr_xs[:batch], ds.tr_ys[:batch]


def fastcnn_step(wid: str, backend: str, batch: int | None = None):
    """A closure running one training step (forward, backward, Adam) of the workload."""
    model, x, y = build(wid, backend, batch)

    def step():
        _, _, grads = model.compute_step(x, y, reuse_grads=True)
        model.optimizer.update(model.params, grads)

    return step


def twin_problem(wid: str) -> str | None:
    """Why the workload has no PyTorch twin (the layer and type ``torch_plan`` refuses), or None."""
    from fastcnn.interop import torch_plan

    model, _, _ = build(wid, "numpy", 1)
    try:
        torch_plan(model)
    except ValueError as exc:
        return str(exc)
    return None


def torch_step(torch, wid: str, layout: str, batch: int | None = None):
    """One PyTorch training step of the workload's twin, model and input in ``layout``
    (``ValueError`` naming the layer when the model has no twin)."""
    import torch_peers

    from fastcnn.interop import to_torch_module

    model, _, _ = build(wid, "numpy", batch)
    _, _, (h, w, c), full_batch, classes = WORKLOADS[wid]
    batch = batch or full_batch
    torch.manual_seed(1)
    net = to_torch_module(model).train()  # the twin comes in eval mode: dropout must draw its masks
    step = torch_peers.make_step(net, torch.nn.CrossEntropyLoss(), layout)
    x = torch_peers.nchw_input(batch, c, h, w, layout)
    target = torch.randint(0, classes, (batch,))
    return lambda: step(x, target)


def time_calls(fn, rounds: int) -> float:
    """Seconds of the fastest of ``rounds`` calls, after one untimed call."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(wid: str, backends, rounds: int, batch: int | None = None) -> dict[str, tuple[float, str] | str]:
    """backend -> (seconds per step, note) or the reason it was not timed; ``torch``: the faster layout."""
    out: dict[str, tuple[float, str] | str] = {}
    for backend in backends:
        if backend != "torch":
            from fastcnn.kernels import backend_available

            if not backend_available(backend):
                out[backend] = "not available (numba-aot: make aot)"
                continue
            out[backend] = (time_calls(fastcnn_step(wid, backend, batch), rounds), "")
            continue
        try:
            import torch
        except ImportError:
            out["torch"] = "torch not installed"
            continue
        problem = twin_problem(wid)
        if problem:
            out["torch"] = f"no twin: {problem.split(' has no PyTorch twin')[0]}"
            continue
        torch.set_num_threads(peer_threads())
        times = {layout: time_calls(torch_step(torch, wid, layout, batch), rounds)
                 for layout in TORCH_LAYOUTS}
        best = min(times, key=times.get)
        other = next(layout for layout in TORCH_LAYOUTS if layout != best)
        out["torch"] = (times[best], f"{best}; {other} {1e3 * times[other]:.1f}")
    return out


def _cell(value) -> str:
    return f"{1e3 * value[0]:.1f}" if isinstance(value, tuple) else "-"


def table(results: dict[str, dict], backends) -> list[str]:
    """Markdown rows: ms per step per backend, numpy / numba and torch / numba."""
    head = "| workload | " + " | ".join(f"{b} ms" for b in backends)
    lines = [head + " | numpy / numba | torch / numba | notes |",
             "|---|" + "---:|" * len(backends) + "---:|---:|---|"]
    for wid, row in results.items():
        numba = row.get("numba")
        ratios = []
        for peer in ("numpy", "torch"):
            value = row.get(peer)
            ok = isinstance(value, tuple) and isinstance(numba, tuple)
            ratios.append(f"{value[0] / numba[0]:.1f}x" if ok else "-")
        notes = [f"{b}: {v[1] if isinstance(v, tuple) else v}" for b, v in row.items()
                 if isinstance(v, str) or (b == "torch" and v[1])]
        lines.append(f"| {wid} | " + " | ".join(_cell(row.get(b)) for b in backends)
                     + f" | {ratios[0]} | {ratios[1]} | {'; '.join(notes)} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=None,
                        help="comma-separated names or id prefixes (default: all): " + ", ".join(WORKLOADS))
    parser.add_argument("--backends", default="numba,numba-aot,numpy,torch")
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per backend (the fastest counts)")
    parser.add_argument("--batch", type=int, default=None, help="override every workload's batch")
    args = parser.parse_args(argv)
    chosen = list(WORKLOADS)
    if args.workloads:
        wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
        chosen = [wid for wid in WORKLOADS if any(wid == w or wid.startswith(f"{w}-") for w in wanted)]
        if not chosen:
            parser.error(f"--workloads: none of {wanted} is a workload; valid: {', '.join(WORKLOADS)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(FASTCNN_BACKENDS) - {"torch"}
    if unknown:
        parser.error(f"--backends: unknown {sorted(unknown)}; valid: {', '.join(FASTCNN_BACKENDS)}, torch")

    from fastcnn import runtime

    runtime.apply_policy()
    print(f"CPU: {cpu_description()}; threads: {peer_threads()}; fastest of {args.rounds} steps after one "
          "untimed step")
    results = {wid: measure(wid, backends, args.rounds, args.batch) for wid in chosen}
    print("\n".join(table(results, backends)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
