"""Probe: what would the numba kernels cost in memory compiled ahead of time, without the JIT?

The peak-memory target (numba lowest) is missed because of the JIT runtime:
``import numba`` and its first dispatch load LLVM and ~600 modules, about
125 MB, before any kernel runs. This probe measures the alternative, the same
kernels compiled ahead of time by ``numba.pycc`` into an extension module
that needs only NumPy at run time.

1. Build: compile the kernels a SimpleConvNet training step calls (conv with
   one input channel, max pooling, ReLU, Adam, the ordered batch sums), float32,
   for this CPU, into a temporary directory. Needs a C compiler.
2. Run one epoch, in two fresh processes, on the same synthetic data as
   ``memory_epoch.py``: "jit" is the ordinary numba backend; "aot" puts
   stand-ins for ``numba`` and ``llvmlite`` in ``sys.modules`` (their
   decorators return placeholders that raise if called), imports fastcnn,
   and points the backend's kernel names at the compiled module's functions.
   The model code, wrappers and buffers are the library's own.
3. Compare peak resident size, and check the final parameters are
   bit-identical between the two (the determinism guarantee: the AOT build
   runs one thread, the JIT one all cores).

pycc exports hold the GIL and have no ``parallel=True``, so the AOT kernels
run on one thread; pycc is pending deprecation upstream. This is a probe for
docs/performance.md, not a backend. Usage::

    python benchmarks/aot_memory_probe.py [--images 60000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MODULE = "fastcnn_aot_probe"
A4 = "f4[:, :, :, ::1]"
#: kernel name in fastcnn.kernels.numba_cpu -> pycc signature of its float32 use in a SimpleConvNet step
EXPORTS = {
    "_tap_offsets": "i8[::1](i8, i8, i8, i8, i8)",
    "_conv_fwd_blocked": f"void({A4}, i8[::1], f4[:, ::1], f4[::1], i8, i8, i8, i8, {A4}, b1)",
    "_conv_bwd_c1": f"void({A4}, {A4}, f4[:, ::1], i8, i8, i8, i8, {A4}, f4[:, :, ::1], f4[:, ::1], b1)",
    "_sum_batch": "f4[::1](f4[:, ::1])",
    "_max_fwd": f"void({A4}, i8, i8, i8, i8, {A4})",
    "_max_bwd": f"void({A4}, {A4}, i8, i8, i8, i8, {A4})",
    "_relu": "void(f4[::1], f4[::1])",
    "_relu_backward": "void(f4[::1], f4[::1], f4[::1])",
    "_adam": "void(f4[::1], f4[::1], f4[::1], f4[::1], f8, f8, f8, f8)",
}


def build(out_dir: Path) -> dict:
    """Compile EXPORTS into ``out_dir``; -> {"seconds", "wide"} (the CPU flag the kernels were built for)."""
    from numba.pycc import CC

    from fastcnn.kernels import numba_cpu

    cc = CC(MODULE)
    cc.output_dir = str(out_dir)
    cc.target_cpu = "host"  # pycc's default is generic x86-64 (no AVX); the JIT compiles for the host
    for name, sig in EXPORTS.items():
        cc.export(name, sig)(getattr(numba_cpu, name).py_func)
    start = time.perf_counter()
    cc.compile()
    return {"seconds": time.perf_counter() - start, "wide": bool(numba_cpu._WIDE)}


CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time, types
    import numpy as np
    mode, images, batch, aot_dir, wide = sys.argv[1], int(sys.argv[2]), 100, sys.argv[3], sys.argv[4] == "1"
    def status_mb(field):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024.0
    rng = np.random.default_rng(0)
    xs = rng.random((images, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, images)
    base = status_mb("VmHWM")
    if mode == "aot":
        def njit(*args, **options):
            def placeholder(fn):
                def missing(*a, **k):
                    raise RuntimeError(fn.__name__ + " is not in the ahead-of-time module")
                return missing
            return placeholder(args[0]) if args and callable(args[0]) else placeholder
        numba = types.ModuleType("numba")
        numba.njit, numba.prange, numba.types = njit, range, types.SimpleNamespace()
        numba.get_num_threads = lambda: 1
        core, extending = types.ModuleType("numba.core"), types.ModuleType("numba.core.extending")
        extending.intrinsic = lambda fn: fn
        numba.core, core.extending = core, extending
        llvmlite, ir, binding = (types.ModuleType(n) for n in ("llvmlite", "llvmlite.ir", "llvmlite.binding"))
        binding.get_host_cpu_features = lambda: {"avx512f": wide}
        llvmlite.ir, llvmlite.binding = ir, binding
        sys.modules.update({"numba": numba, "numba.core": core, "numba.core.extending": extending,
                            "llvmlite": llvmlite, "llvmlite.ir": ir, "llvmlite.binding": binding})
        sys.path.insert(0, aot_dir)
        import fastcnn_aot_probe as compiled
        from fastcnn.kernels import numba_cpu
        for name in json.loads(sys.argv[5]):
            setattr(numba_cpu, name, getattr(compiled, name))
    from fastcnn import CnnModel
    from fastcnn.datasets.base import ArrayDataset
    from fastcnn.zoo import get_preset
    ys = np.eye(10, dtype=np.float32)[labels]
    ds = ArrayDataset("synthetic", xs[:300], ys[:300], "select", [str(i) for i in range(10)])
    model = CnnModel("mem", ds, None, get_preset("simpleconvnet"), backend="numba", seed=1)
    def run_batch(i):
        _, _, grads = model.compute_step(xs[i:i + batch], ys[i:i + batch], reuse_grads=True)
        model.optimizer.update(model.params, grads)
    run_batch(0)
    warm = status_mb("VmRSS")
    start = time.perf_counter()
    for i in range(batch, images - batch + 1, batch):
        run_batch(i)
    secs = time.perf_counter() - start
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in model.params.values()))
    print(json.dumps({"mode": mode, "baseline_mb": base, "warm_mb": warm, "peak_mb": status_mb("VmHWM"),
                      "anon_mb": status_mb("RssAnon"), "file_mb": status_mb("RssFile"), "epoch_s": secs,
                      "jit_loaded": "llvmlite.binding.ffi" in sys.modules,
                      "params_sha256": digest.hexdigest()}))
    """
)


def measure(mode: str, images: int, aot_dir: Path, wide: bool) -> dict:
    """One epoch in a fresh interpreter; its memory figures and a hash of the trained parameters."""
    argv = [sys.executable, "-c", CHILD, mode, str(images), str(aot_dir), "1" if wide else "0",
            json.dumps(list(EXPORTS))]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6000, help="images in the epoch (default 6000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        built = build(Path(tmp))
        print(f"ahead-of-time build of {len(EXPORTS)} kernels: {built['seconds']:.1f} s")
        rows = [measure(mode, args.images, Path(tmp), built["wide"]) for mode in ("aot", "jit")]
    print(f"\nSimpleConvNet, one epoch of {args.images} synthetic 28x28x1 images, batch 100\n")
    print("| numba kernels | threads | baseline MB | warm MB | peak MB | anon MB | file MB | epoch s "
          "| LLVM loaded |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        threads = "1" if r["mode"] == "aot" else "all"
        cells = (r["mode"], threads, *(f"{r[k]:.0f}" for k in ("baseline_mb", "warm_mb", "peak_mb", "anon_mb",
                                                               "file_mb")), f"{r['epoch_s']:.1f}",
                 "yes" if r["jit_loaded"] else "no")
        print("| " + " | ".join(cells) + " |")
    same = rows[0]["params_sha256"] == rows[1]["params_sha256"]
    print(f"\ntrained parameters bit-identical, aot (1 thread) vs jit: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
