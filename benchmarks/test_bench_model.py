"""Whole training steps (forward, backward, optimizer update) per backend.

Workloads are the two models the issues name, on synthetic data of the real
shape: SimpleConvNet (seed 004) at batch 100 on 28x28x1, and the seed's
Office-31 model at batch 32 on 96x96x3 (dual_select: 3 domains + 31 objects).
Groups are ``step <workload>``; the backends run the same model (same seed,
same data). ``better`` and ``adhoc`` run on one image and record the per-image
time (the report scales it). PyTorch runs the same architecture
(``benchmarks/torch_peers.py``) with Adam, when installed, in both memory
formats: ``torch-nchw`` (contiguous) and ``torch-channels_last`` rows
(``extra_info['torch_layout']``); the report compares with the faster.
"""

from __future__ import annotations

import numpy as np
import pytest
from bench_common import SLOW_BACKENDS, SMALL_BATCH, TORCH_BACKENDS, require_backend, run, split_backend

from fastcnn import CnnModel
from fastcnn.datasets.base import ArrayDataset
from fastcnn.zoo import get_preset

BACKENDS = ("numba", "numba-aot", "numpy", "better", "adhoc") + TORCH_BACKENDS

#: id -> (preset, input shape HWC, batch, output spec)
STEP_WORKLOADS = {
    "simpleconvnet-n100-28x28x1": ("simpleconvnet", (28, 28, 1), 100, ("select", 10)),
    "office31-n32-96x96x3": ("office31", (96, 96, 3), 32, ("dual_select", (3, 31))),
}


def synthetic_dataset(shape, batch: int, spec, seed: int = 0) -> ArrayDataset:
    """``batch`` random images with random one-hot targets in the workload's mode."""
    rng = np.random.default_rng(seed)
    n = max(batch, 3)
    xs = rng.random((n,) + shape, dtype=np.float32)
    mode, counts = spec
    if mode == "select":
        ys = np.eye(counts, dtype=np.float32)[rng.integers(0, counts, n)]
        names = [str(i) for i in range(counts)]
    else:
        domains, objects = counts
        domain_hot = np.eye(domains)[rng.integers(0, domains, n)]
        object_hot = np.eye(objects)[rng.integers(0, objects, n)]
        ys = np.concatenate([domain_hot, object_hot], axis=1)
        names = ([f"d{i}" for i in range(domains)], [f"o{i}" for i in range(objects)])
    ds = ArrayDataset("synthetic", xs, ys, mode, names, split=(1.0, 0.0))
    return ds


def fastcnn_step(wid: str, backend: str, batch: int, fuse: bool = True):
    """A closure running one training step of the workload's model on ``batch`` images
    (``fuse=False``: every layer on its own, no fused conv + pooling steps)."""
    preset, shape, _, spec = STEP_WORKLOADS[wid]
    ds = synthetic_dataset(shape, batch, spec)
    model = CnnModel(wid, ds, None, get_preset(preset), backend=backend, seed=1, fuse=fuse)
    x, y = ds.tr_xs[:batch], ds.tr_ys[:batch]

    def step():
        _, _, grads = model.compute_step(x, y, reuse_grads=True)
        model.optimizer.update(model.params, grads)

    return step


def torch_step(torch, wid: str, batch: int, layout: str):
    """One PyTorch training step of the workload's twin, model and input in ``layout``."""
    import torch_peers

    preset, (h, w, c), _, spec = STEP_WORKLOADS[wid]
    torch.manual_seed(1)
    if spec[0] == "select":
        model, loss_fn = torch_peers.simpleconvnet()
        target = torch.randint(0, spec[1], (batch,))
    else:
        model, loss_fn = torch_peers.office31(*spec[1])
        target = (torch.randint(0, spec[1][0], (batch,)), torch.randint(0, spec[1][1], (batch,)))
    step = torch_peers.make_step(model, loss_fn, layout)
    x = torch_peers.nchw_input(batch, c, h, w, layout)
    return lambda: step(x, target)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wid", list(STEP_WORKLOADS))
def test_train_step(benchmark, wid, backend, numba_threads, request):
    backend, layout = split_backend(backend)
    require_backend(backend)
    full_batch = STEP_WORKLOADS[wid][2]
    batch = SMALL_BATCH if backend in SLOW_BACKENDS else full_batch
    benchmark.group = f"step {wid}"
    benchmark.extra_info.update(
        op="step", pass_="fwdbwd+adam", workload=wid, backend=backend, batch=batch,
        full_batch=full_batch, scale=full_batch / batch, numba_threads=numba_threads,
    )
    if backend == "torch":
        torch = request.getfixturevalue("torch_mod")
        benchmark.extra_info["torch_threads"] = torch.get_num_threads()
        benchmark.extra_info["torch_layout"] = layout
        fn = torch_step(torch, wid, batch, layout)
    else:
        fn = fastcnn_step(wid, backend, batch)
    t = run(benchmark, fn, rounds=1 if backend in SLOW_BACKENDS else None)
    benchmark.extra_info["per_image_s"] = t / batch
    benchmark.extra_info["steps_per_s"] = 1.0 / (t * full_batch / batch)


@pytest.mark.parametrize("backend", ("numba", "numba-aot"))
@pytest.mark.parametrize("wid", list(STEP_WORKLOADS))
def test_train_step_layer_by_layer(benchmark, wid, backend, numba_threads):
    """The numba steps without fused conv + pooling (``CnnModel(fuse=False)``): the A side of the
    fusion (docs/benchmarks.md, "Fused conv + pooling"); the ``step`` group's numba rows fuse."""
    require_backend(backend)
    batch = STEP_WORKLOADS[wid][2]
    benchmark.group = f"step {wid} layer by layer"
    benchmark.extra_info.update(op="step_layers", pass_="fwdbwd+adam", workload=wid, backend=backend,
                                batch=batch, numba_threads=numba_threads)
    run(benchmark, fastcnn_step(wid, backend, batch, fuse=False))
