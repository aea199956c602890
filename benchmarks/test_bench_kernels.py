"""Kernel benchmarks: conv and pooling, forward / backward / forward+backward, per backend.

Groups are ``<op> <pass> <workload>``; within a group the backends (numba,
numpy = the book's im2col path, better, adhoc, torch) run on the same input.
PyTorch runs through ``torch.nn.functional`` forward ops and the ``aten``
backward ops, in both memory formats: ``torch-channels_last`` (NCHW tensors
with channels_last strides, the same NHWC memory as ours, no copies) and
``torch-nchw`` (contiguous NCHW, converted once before timing); the layout is
in the id and in ``extra_info['torch_layout']``, and the report compares with
the faster of the two.

Every timed callable runs once before timing, so numba's JIT (or cache load)
stays out of the numbers. The slow pure-Python backends (``better``, ``adhoc``)
run on ``SMALL_BATCH`` images; their ``extra_info`` records the per-image time
and the factor that scales it to the workload's batch (the report applies it).
Run with
``python -m pytest benchmarks --benchmark`` and summarize with
``python benchmarks/report.py RESULTS.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from bench_common import (
    SLOW_BACKENDS,
    SMALL_BATCH,
    TORCH_BACKENDS,
    conv_flops,
    data,
    require_backend,
    run,
    split_backend,
)

from fastcnn import kernels as K
from fastcnn.kernels.shapes import conv_geometry, pool_geometry

BACKENDS = ("numba", "numba-aot", "numpy", "better", "adhoc") + TORCH_BACKENDS
ROOT = Path(__file__).resolve().parents[1]

#: conv workloads: id -> (x shape NHWC, kernel size, output channels, padding)
CONV_WORKLOADS = {
    "n100-28x28x1-k5-c30": ((100, 28, 28, 1), 5, 30, "valid"),  # SimpleConvNet conv
    "n32-96x96x3-k3-c6": ((32, 96, 96, 3), 3, 6, "same"),  # Office-31 seed model, conv 1
    "n32-48x48x6-k3-c12": ((32, 48, 48, 6), 3, 12, "same"),  # conv 2 (after max 2)
    "n32-24x24x12-k3-c24": ((32, 24, 24, 12), 3, 24, "same"),  # conv 3 (after max 2)
}

#: pooling workloads: id -> (x shape NHWC, kind, window == stride)
POOL_WORKLOADS = {
    "n32-96x96x6-max2": ((32, 96, 96, 6), "max", 2),  # Office-31 pool 1
    "n32-48x48x12-max2": ((32, 48, 48, 12), "max", 2),  # Office-31 pool 2
    "n32-24x24x24-avg3": ((32, 24, 24, 24), "avg", 3),  # Office-31 pool 3
    "n100-24x24x30-max2": ((100, 24, 24, 30), "max", 2),  # SimpleConvNet pool
}

PASSES = ("fwd", "bwd", "fwdbwd")
#: pooling kind -> (forward, backward) of the kernel contract
POOL_FUNCTIONS = {
    "max": (K.max_pool_forward, K.max_pool_backward),
    "avg": (K.avg_pool_forward, K.avg_pool_backward),
}


def _info(benchmark, backend, wid, op, pass_, x_shape, batch, numba_threads, torch_threads=None,
          torch_layout=None):
    benchmark.group = f"{op} {pass_} {wid}"
    benchmark.extra_info.update(
        backend=backend,
        op=op,
        pass_=pass_,
        workload=wid,
        x_shape=list(x_shape),
        batch=batch,
        full_batch=x_shape[0],
        per_image=backend in SLOW_BACKENDS,
        scale=x_shape[0] / batch,  # report: full-batch time = measured time * scale
        numba_threads=numba_threads,
        torch_threads=torch_threads,
        dtype="float32",
    )
    if torch_layout is not None:
        benchmark.extra_info["torch_layout"] = torch_layout


def _torch_nchw(torch, x, layout):
    """The NHWC array ``x`` as a torch NCHW tensor stored in ``layout`` (a copy only for "nchw")."""
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NCHW view of NHWC memory = channels_last
    return xt.contiguous() if layout == "nchw" else xt


# --------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------


def _torch_conv(torch, x, k, b, pad, pass_, layout):
    """Closures running torch's conv forward / backward, input and kernel in ``layout``."""
    xt = _torch_nchw(torch, x, layout)
    fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
    kt = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous(memory_format=fmt)
    bt = torch.from_numpy(b)
    p = (k.shape[0] - 1) // 2 if pad == "same" else 0  # the workloads' kernels are odd
    ychn = k.shape[3]

    def fwd():
        return torch.nn.functional.conv2d(xt, kt, bt, padding=p)

    gy = fwd().detach().clone()

    def bwd():
        return torch.ops.aten.convolution_backward(
            gy, xt, kt, [ychn], [1, 1], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
        )

    return {"fwd": fwd, "bwd": bwd, "fwdbwd": lambda: (fwd(), bwd())}[pass_]


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wid", list(CONV_WORKLOADS))
def test_conv(benchmark, wid, backend, pass_, numba_threads, request):
    backend, layout = split_backend(backend)
    require_backend(backend)
    x_shape, ks, ychn, pad = CONV_WORKLOADS[wid]
    batch = SMALL_BATCH if backend in SLOW_BACKENDS else x_shape[0]
    x = data((batch,) + x_shape[1:], 0)
    k = data((ks, ks, x_shape[3], ychn), 1) * np.float32(0.1)
    b = data((ychn,), 2)
    geo = conv_geometry(x.shape, ks, ks, 1, pad)
    g_y = data((batch, geo.yh, geo.yw, ychn), 3)
    torch_threads = None
    if backend == "torch":
        torch = request.getfixturevalue("torch_mod")
        torch_threads = torch.get_num_threads()
        fn = _torch_conv(torch, x, k, b, pad, pass_, layout)
    else:
        fwd = lambda: K.conv2d_forward(x, k, b, 1, pad, backend=backend)  # noqa: E731
        bwd = lambda: K.conv2d_backward(g_y, x, k, 1, pad, backend=backend)  # noqa: E731
        fn = {"fwd": fwd, "bwd": bwd, "fwdbwd": lambda: (fwd(), bwd())}[pass_]
    _info(benchmark, backend, wid, "conv", pass_, x_shape, batch, numba_threads, torch_threads, layout)
    flops = conv_flops(x.shape, ks, ychn, geo.yh, geo.yw) * {"fwd": 1, "bwd": 2, "fwdbwd": 3}[pass_]
    slow = backend in SLOW_BACKENDS  # pure Python loops: no JIT to keep out, a round takes seconds
    t = run(benchmark, fn, rounds=1 if slow else None, warmup=not slow)
    benchmark.extra_info["flops"] = flops
    benchmark.extra_info["gflops"] = flops / t / 1e9
    benchmark.extra_info["per_image_s"] = t / batch


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------


def _torch_pool(torch, x, kind, size, pass_, layout):
    """torch pooling with ``x`` in ``layout``; max backward reuses the indices of its forward."""
    xt = _torch_nchw(torch, x, layout)
    if kind == "max":

        def fwd():
            return torch.ops.aten.max_pool2d_with_indices(xt, [size, size], [size, size])

        y, idx = fwd()
        gy = y.detach().clone()

        def bwd(indices=idx):
            return torch.ops.aten.max_pool2d_with_indices_backward(
                gy, xt, [size, size], [size, size], [0, 0], [1, 1], False, indices
            )

        def fwdbwd():
            _, indices = fwd()
            return bwd(indices)

    else:

        def fwd():
            return torch.nn.functional.avg_pool2d(xt, size, size)

        gy = fwd().detach().clone()

        def bwd():
            win = [size, size]
            return torch.ops.aten.avg_pool2d_backward(gy, xt, win, win, [0, 0], False, True, None)

        def fwdbwd():
            return fwd(), bwd()

    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwdbwd}[pass_]


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wid", list(POOL_WORKLOADS))
def test_pool(benchmark, wid, backend, pass_, numba_threads, request):
    backend, layout = split_backend(backend)
    require_backend(backend)
    x_shape, kind, size = POOL_WORKLOADS[wid]
    batch = SMALL_BATCH if backend in SLOW_BACKENDS else x_shape[0]
    x = data((batch,) + x_shape[1:], 4)
    geo = pool_geometry(x.shape, size, None)
    g_y = data((batch, geo.yh, geo.yw, x_shape[3]), 5)
    torch_threads = None
    if backend == "torch":
        torch = request.getfixturevalue("torch_mod")
        torch_threads = torch.get_num_threads()
        fn = _torch_pool(torch, x, kind, size, pass_, layout)
    else:
        f, g = POOL_FUNCTIONS[kind]
        fwd = lambda: f(x, size, backend=backend)  # noqa: E731
        bwd = lambda: g(g_y, x, size, backend=backend)  # noqa: E731
        fn = {"fwd": fwd, "bwd": bwd, "fwdbwd": lambda: (fwd(), bwd())}[pass_]
    _info(benchmark, backend, wid, "pool", pass_, x_shape, batch, numba_threads, torch_threads, layout)
    t = run(benchmark, fn, rounds=3 if backend in SLOW_BACKENDS else None)
    benchmark.extra_info["per_image_s"] = t / batch
    # bytes a pass must move at least: read x, write y (fwd); read g_y and x, write g_x (bwd)
    x_bytes, y_bytes = x.nbytes, g_y.nbytes
    fwd_bytes, bwd_bytes = x_bytes + y_bytes, 2 * x_bytes + y_bytes
    moved = {"fwd": fwd_bytes, "bwd": bwd_bytes, "fwdbwd": fwd_bytes + bwd_bytes}[pass_]
    benchmark.extra_info["bytes"] = moved
    benchmark.extra_info["gbytes_per_s"] = moved / t / 1e9


@pytest.mark.parametrize("wid", list(POOL_WORKLOADS))
def test_copy(benchmark, wid, numba_threads):
    """A plain array copy of a pool input: the memory bandwidth pooling is measured against."""
    x = data(POOL_WORKLOADS[wid][0], 8)
    out = np.empty_like(x)
    benchmark.group = "reference copy"
    t = run(benchmark, lambda: np.copyto(out, x))
    benchmark.extra_info.update(op="copy", workload=wid, bytes=2 * x.nbytes,
                                gbytes_per_s=2 * x.nbytes / t / 1e9, numba_threads=numba_threads)


# --------------------------------------------------------------------------
# reference points: machine sgemm, memory copy, JIT cost
# --------------------------------------------------------------------------


def test_sgemm(benchmark, numba_threads):
    """numpy (OpenBLAS) float32 matmul: the machine's dense GFLOP/s, to put conv GFLOP/s in scale."""
    n = 1024
    a, b = data((n, n), 6), data((n, n), 7)
    benchmark.group = "reference sgemm"
    t = run(benchmark, lambda: a @ b)
    benchmark.extra_info.update(op="sgemm", shape=[n, n, n], gflops=2.0 * n**3 / t / 1e9,
                                numba_threads=numba_threads)


def _im2col_products(wid: str):
    """The im2col path's GEMMs of a conv workload: {pass: [(a, b), ...]}, and M, K, N.

    Forward is col (M x K) @ w (K x N); backward is g_w = col.T @ g_y and
    g_col = g_y @ w.T. Each product does 2*M*K*N flops, as the conv pass does.
    """
    x_shape, ks, ychn, pad = CONV_WORKLOADS[wid]
    geo = conv_geometry(x_shape, ks, ks, 1, pad)
    m, k = x_shape[0] * geo.yh * geo.yw, ks * ks * x_shape[3]
    col, w, g_y = data((m, k), 9), data((k, ychn), 10), data((m, ychn), 11)
    fwd, bwd = [(col, w)], [(col.T, g_y), (g_y, w.T)]
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}, (m, k, ychn)


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("wid", list(CONV_WORKLOADS))
def test_sgemm_conv_shape(benchmark, wid, pass_, numba_threads):
    """sgemm on the conv's own im2col GEMM shapes: what a tuned BLAS gets where K and N are small.

    The conv GFLOP/s target is "half of sgemm wherever the shape allows"; this
    measures what the shape allows a GEMM library (no im2col copy counted).
    """
    products, (m, k, n) = _im2col_products(wid)
    todo = products[pass_]
    benchmark.group = "reference sgemm at conv shape"
    t = run(benchmark, lambda: [a @ b for a, b in todo])
    flops = 2.0 * m * k * n * len(todo)
    benchmark.extra_info.update(op="sgemm_shape", workload=wid, pass_=pass_, shape=[m, k, n],
                                flops=flops, gflops=flops / t / 1e9, numba_threads=numba_threads)


@pytest.mark.parametrize("wid", list(CONV_WORKLOADS))
def test_ordered_batch_sum(benchmark, wid, numba_threads):
    """What determinism costs a conv backward: summing per-image g_k / g_b partials in image order.

    A thread-count-dependent reduction would still add one partial per thread;
    timing the whole ordered sum of the batch is an upper bound on the extra.
    """
    from fastcnn.kernels import numba_kernels

    x_shape, ks, ychn, _ = CONV_WORKLOADS[wid]
    mb, xc = x_shape[0], x_shape[3]
    gk_part = data((mb, ks * ks * xc, ychn), 12)  # rows (ci, ky, kx), as _conv_bwd fills them
    gb_part = data((mb, ychn), 13)
    g_k, g_b = np.empty((ks, ks, xc, ychn), np.float32), np.empty(ychn, np.float32)
    benchmark.group = "reference ordered batch sum"
    t = run(benchmark, lambda: numba_kernels._sum_parts(gk_part, gb_part, False, g_k, g_b))
    benchmark.extra_info.update(op="batch_sum", workload=wid, bytes=gk_part.nbytes + gb_part.nbytes,
                                seconds=t, numba_threads=numba_threads)


_COMPILE_CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    from fastcnn import kernels as K
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 12, 12, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = np.zeros(4, np.float32)
    y = K.conv2d_forward(x, k, b)
    K.conv2d_backward(y, x, k)
    p = K.max_pool_forward(x, 2)
    K.max_pool_backward(p, x, 2)
    a = K.avg_pool_forward(x, 2)
    K.avg_pool_backward(a, x, 2)
    c = K.ext_regions(x, 3, 3)
    K.undo_ext_regions(c, x.shape, 3, 3)
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "first_calls_s": t2 - t1}))
    """
)


def _child(cache_dir: str) -> dict:
    import json

    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _COMPILE_CHILD], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=600)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["process_s"] = time.perf_counter() - t
    return info


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_numba_compile(benchmark, cache, numba_threads):
    """First call of every numba kernel (float32) in a fresh process: empty cache vs populated cache."""
    benchmark.group = "jit numba first calls"
    with tempfile.TemporaryDirectory() as cache_dir:
        if cache == "warm":
            _child(cache_dir)  # populate
        result = {}

        def once():
            result.update(_child(cache_dir))

        benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(op="jit", cache=cache, numba_threads=numba_threads, **result)
