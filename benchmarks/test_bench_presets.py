"""Whole training steps of the chapter 8-9 presets per backend (``preset_steps.WORKLOADS``).

Groups are ``step <workload>`` as in ``test_bench_model.py``: numba, numba-aot and numpy
run the same model (same seed, same data); PyTorch runs the model's twin
(``fastcnn.interop.to_torch_module``, training mode, Adam) in both memory formats
(``torch-nchw`` and ``torch-channels_last`` rows, ``extra_info['torch_layout']``), and is
skipped, naming the layer, where the model has no twin (batch norm, noise, composites).
``better`` and ``adhoc`` are left out: one image of these networks takes them 0.15-0.9 s
and 12-38 s (``tests/test_presets_train.py`` trains every preset on them once).
"""

from __future__ import annotations

import pytest
from bench_common import TORCH_BACKENDS, require_backend, run, split_backend
from preset_steps import WORKLOADS, fastcnn_step, torch_step, twin_problem

BACKENDS = ("numba", "numba-aot", "numpy") + TORCH_BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_preset_train_step(benchmark, wid, backend, numba_threads, request):
    backend, layout = split_backend(backend)
    require_backend(backend)
    batch = WORKLOADS[wid][3]
    benchmark.group = f"step {wid}"
    benchmark.extra_info.update(
        op="step", pass_="fwdbwd+adam", workload=wid, backend=backend, batch=batch,
        full_batch=batch, scale=1.0, numba_threads=numba_threads,
    )
    if backend == "torch":
        torch = request.getfixturevalue("torch_mod")
        problem = twin_problem(wid)
        if problem:
            pytest.skip(f"no PyTorch twin: {problem}")
        benchmark.extra_info["torch_threads"] = torch.get_num_threads()
        benchmark.extra_info["torch_layout"] = layout
        fn = torch_step(torch, wid, layout)
    else:
        fn = fastcnn_step(wid, backend)
    t = run(benchmark, fn)
    benchmark.extra_info["per_image_s"] = t / batch
    benchmark.extra_info["steps_per_s"] = 1.0 / t
