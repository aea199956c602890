"""Peak memory of one SimpleConvNet training epoch, per backend (and PyTorch if installed).

Each backend runs in its own fresh process so that peaks do not mix. A child
builds ``--images`` synthetic 28x28x1 images (interpreter, numpy and the data
are the "baseline"), trains one epoch at batch 100 with Adam, and reports its peak
resident set size (``VmHWM``, Linux). "extra" = peak - baseline is what the
library costs on top: its code and JIT, activations, im2col buffers, gradients
and optimizer state. "warm" is the resident size right after the first step
(imports, compiled or cached kernels loaded, parameters, optimizer state, a
step's buffers); "epoch" = peak - warm is what the training loop itself adds.
"anon" and "file" split the resident size at the end of the epoch into private
memory (heap, arrays, Python objects) and pages of mapped files (shared
libraries' code: numba's LLVM, libllvmlite.so, is most of numba's).

PyTorch runs in both memory formats (``torch`` in ``--backends`` means both:
``torch-nchw``, contiguous, and ``torch-channels_last``; either can be named
alone); a closing line names the faster layout's epoch time and its peak.

Usage::

    python benchmarks/memory_epoch.py [--images 60000] [--backends numba numba-aot numpy torch]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import TORCH_BACKENDS, cpu_description, split_backend  # noqa: E402

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    backend, images, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    layout = backend[len("torch-"):] if backend.startswith("torch-") else None
    def status_mb(field):  # VmHWM (peak) is exact when read; ru_maxrss can lag behind it
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024.0
    def rss_mb():
        return status_mb("VmHWM")
    def rss_now_mb():
        return status_mb("VmRSS")
    rng = np.random.default_rng(0)
    xs = rng.random((images, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, images)
    base = rss_mb()  # interpreter + numpy + the data, before any library code
    if layout is not None:
        import torch
        sys.path.insert(0, sys.argv[4])
        import torch_peers
        torch.manual_seed(1)
        model, loss_fn = torch_peers.simpleconvnet()
        step = torch_peers.make_step(model, loss_fn, layout)
        fmt = torch_peers.MEMORY_FORMATS[layout]
        x_all = torch.from_numpy(xs).permute(0, 3, 1, 2)
        t_all = torch.from_numpy(labels)
        def run_batch(i):
            step(x_all[i:i + batch].contiguous(memory_format=fmt), t_all[i:i + batch])
    else:
        from fastcnn import CnnModel, runtime
        from fastcnn.datasets.base import ArrayDataset
        from fastcnn.zoo import get_preset
        runtime.apply_policy()  # as training does (the allocator setting: docs/runtime.md)
        ys = np.eye(10, dtype=np.float32)[labels]
        ds = ArrayDataset("synthetic", xs[:300], ys[:300], "select", [str(i) for i in range(10)])
        model = CnnModel("mem", ds, None, get_preset("simpleconvnet"), backend=backend, seed=1)
        def run_batch(i):
            _, _, grads = model.compute_step(xs[i:i + batch], ys[i:i + batch], reuse_grads=True)
            model.optimizer.update(model.params, grads)
    run_batch(0)  # compile / warm up: counted in the peak, not in the epoch time
    warm = rss_now_mb()
    start = time.perf_counter()
    for i in range(0, images - batch + 1, batch):
        run_batch(i)
    secs = time.perf_counter() - start
    print(json.dumps({"backend": backend, "images": images, "baseline_mb": base,
                      "warm_mb": warm, "peak_mb": rss_mb(), "epoch_s": secs,
                      "anon_mb": status_mb("RssAnon"), "file_mb": status_mb("RssFile")}))
    """
)


def measure(backend: str, images: int, batch: int) -> dict:
    """Run one epoch in a fresh interpreter and return its memory figures."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, str(images), str(batch), str(HERE)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        return {"backend": backend, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6000, help="images in the epoch (default 6000)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["numba", "numba-aot", "numpy", "torch"])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    backends = [b for name in args.backends for b in (TORCH_BACKENDS if name == "torch" else (name,))]
    rows = [measure(b, args.images, args.batch) for b in backends]
    print(f"CPU: {cpu_description()}")
    print(f"SimpleConvNet, one epoch of {args.images} synthetic 28x28x1 images, batch {args.batch}\n")
    print("| backend | baseline MB | warm MB | peak MB | extra MB | epoch MB | anon MB | file MB | epoch s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | - | - | - | - | - | - | - | skipped: {r['error'][:60]} |")
            continue
        extra = r["peak_mb"] - r["baseline_mb"]
        cells = (r["backend"], f"{r['baseline_mb']:.0f}", f"{r['warm_mb']:.0f}", f"{r['peak_mb']:.0f}",
                 f"{extra:.0f}", f"{r['peak_mb'] - r['warm_mb']:.0f}", f"{r['anon_mb']:.0f}",
                 f"{r['file_mb']:.0f}", f"{r['epoch_s']:.1f}")
        print("| " + " | ".join(cells) + " |")
    torch_rows = [r for r in rows if r["backend"] in TORCH_BACKENDS and "error" not in r]
    if torch_rows:
        best = min(torch_rows, key=lambda r: r["epoch_s"])

        def desc(r):
            layout = split_backend(r["backend"])[1]
            return f"{layout} (epoch {r['epoch_s']:.1f} s, peak {r['peak_mb']:.0f} MB)"

        others = ", ".join(desc(r) for r in torch_rows if r is not best)
        print(f"\nPyTorch's faster layout: {desc(best)}" + (f"; the other: {others}" if others else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
