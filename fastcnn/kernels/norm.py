"""Batch normalization's per-channel work, by backend: NumPy here, numba in ``numba_norm``.

Arrays are 2-D and C-contiguous: ``x2 [n, chn]`` is a batch flattened to rows (NHWC maps
``[mb, h, w, chn]`` give ``n = mb*h*w``; flat inputs ``[mb, features]`` are already 2-D),
so every statistic runs down the last axis. Statistics are accumulated in float64 and
returned as float64 ``[chn]`` vectors; arrays the size of ``x2`` keep its dtype. The
functions, the same on every backend::

    bn_stats(x2) -> (mean, var)                   population variance (ddof 0), two passes
    bn_normalize(x2, mean, inv, scale, shift) -> (norm, y)
        norm = (x2 - mean) * inv;  y = norm * scale + shift, or y is norm when scale is None
    bn_backward(g2, norm, inv, scale, exact) -> (g_x, g_scale, g_shift)
        g_scale = sum(g2 * norm), g_shift = sum(g2) (None when scale is None); with gn = g2 * scale:
        exact:  g_x = inv * (gn - mean(gn) - norm * mean(gn * norm))   (mean over the n rows)
        else:   g_x = inv * gn                                        (the book's simplified form)

``bind_norm(backend)`` returns them for a backend (``NORM_BACKENDS``). ``numba-aot`` uses
the NumPy versions: its extension module is built from a fixed kernel table
(``fastcnn.kernels.aot``) and a process on it loads neither numba nor LLVM, which the JIT
kernels would break.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: the functions every module in NORM_BACKENDS defines
NORM_FUNCTIONS = ("bn_stats", "bn_normalize", "bn_backward")

#: backend name -> the module with its batch-norm functions
NORM_BACKENDS: dict[str, str] = {
    "numba": "fastcnn.kernels.numba_norm",
    "numba-aot": __name__,
    "numpy": __name__,
    "better": __name__,
    "adhoc": __name__,
}


def bn_stats(x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x2.mean(axis=0, dtype=np.float64)
    d = x2 - mean  # float64
    return mean, np.einsum("ij,ij->j", d, d) / x2.shape[0]


def bn_normalize(x2, mean, inv, scale, shift):
    norm = ((x2 - mean) * inv).astype(x2.dtype, copy=False)
    if scale is None:
        return norm, norm
    return norm, norm * scale + shift


def bn_backward(g2, norm, inv, scale, exact: bool):
    g64 = g2.astype(np.float64, copy=False)
    sum_g = g64.sum(axis=0)
    sum_gn = np.einsum("ij,ij->j", g64, norm.astype(np.float64, copy=False))
    s = np.ones_like(inv) if scale is None else scale.astype(np.float64)
    gn = g64 * s
    if exact:
        n = g2.shape[0]
        gn = gn - (s * sum_g / n) - norm * (s * sum_gn / n)
    g_x = (gn * inv).astype(g2.dtype, copy=False)
    if scale is None:
        return g_x, None, None
    return g_x, sum_gn.astype(g2.dtype), sum_g.astype(g2.dtype)


@dataclass(frozen=True)
class NormOps:
    """One backend's batch-norm functions (see the module docstring)."""

    name: str
    bn_stats: Callable
    bn_normalize: Callable
    bn_backward: Callable


_bound: dict[str, NormOps] = {}


def bind_norm(name: str) -> NormOps:
    """The batch-norm functions of backend ``name`` (``ValueError`` for an unknown name)."""
    if name not in NORM_BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(NORM_BACKENDS)}")
    if name not in _bound:
        from . import get_backend

        get_backend(name)  # the backend's own set-up first (numba: its threading layer, cache guard)
        module = importlib.import_module(NORM_BACKENDS[name])
        _bound[name] = NormOps(name, **{f: getattr(module, f) for f in NORM_FUNCTIONS})
    return _bound[name]
