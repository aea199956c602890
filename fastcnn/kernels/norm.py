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

``bind_norm(backend)`` returns them for a backend (``NORM_BACKENDS``): NumPy here for
numpy, better and adhoc; ``numba_norm``'s kernels for ``numba`` (JIT) and ``numba-aot`` (the
same kernels built ahead of time, ``aot_norm``), both through ``KernelNorm``, so the two give
the same bits.
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
    "numba-aot": "fastcnn.kernels.aot_norm",
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


#: rows per chunk of the compiled kernels' per-channel sums (the last chunk may be shorter)
CHUNK_ROWS = 512
#: at most this many chunks (partials: MAX_CHUNKS x chn float64)
MAX_CHUNKS = 256


def row_chunks(n: int) -> int:
    """How many row chunks the compiled sums of ``n`` rows use: a function of ``n`` alone,
    never of the thread count (``numba_norm``)."""
    return max(1, min(MAX_CHUNKS, -(-n // CHUNK_ROWS)))


class KernelNorm:
    """The three functions around ``numba_norm``'s compiled kernels, given as ``stats``,
    ``normalize`` and ``backward``: the JIT ones (``numba``) or their ahead-of-time builds
    (``numba-aot``, ``aot_norm``). Both get the same arguments from here, and so give the same
    bits. Arrays are made C-contiguous (the builds take nothing else); vectors of statistics
    are float64, ``scale``/``shift`` the data's dtype in ``normalize``, float64 in ``backward``.
    Imports no numba."""

    def __init__(self, stats: Callable, normalize: Callable, backward: Callable):
        self._stats, self._normalize, self._backward = stats, normalize, backward

    def bn_stats(self, x2: np.ndarray):
        x2 = np.ascontiguousarray(x2)
        c = x2.shape[1]
        mean = np.empty(c)
        var = np.empty(c)
        self._stats(x2, row_chunks(x2.shape[0]), mean, var)
        return mean, var

    def bn_normalize(self, x2, mean, inv, scale, shift):
        x2 = np.ascontiguousarray(x2)
        norm = np.empty_like(x2)
        rescale = scale is not None
        y = np.empty_like(x2) if rescale else norm
        if rescale:
            scale = np.ascontiguousarray(scale, x2.dtype)
            shift = np.ascontiguousarray(shift, x2.dtype)
        else:  # typed placeholders: the kernel never reads them
            scale = shift = np.empty(0, x2.dtype)
        self._normalize(x2, np.ascontiguousarray(mean, np.float64), np.ascontiguousarray(inv, np.float64),
                        scale, shift, rescale, norm, y)
        return norm, y

    def bn_backward(self, g2, norm, inv, scale, exact: bool):
        norm = np.ascontiguousarray(norm)
        g2 = np.ascontiguousarray(g2, norm.dtype)
        c = g2.shape[1]
        g_x = np.empty_like(g2)
        sums = np.empty((2, c))
        s = np.ones(c) if scale is None else np.ascontiguousarray(scale, np.float64)
        inv = np.ascontiguousarray(inv, np.float64)
        self._backward(g2, norm, inv, s, bool(exact), row_chunks(g2.shape[0]), g_x, sums)
        if scale is None:
            return g_x, None, None
        return g_x, sums[1].astype(g2.dtype), sums[0].astype(g2.dtype)


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
