"""Dropout and noise in one parallel pass each: counter-based random numbers (``masks``).

Element ``i`` of a call gets its uniform number from ``(key, i)`` alone (splitmix64's mix),
so the threads split the elements in fixed blocks and every mask is the same on any
thread count; the numbers equal ``masks.uniforms`` bit for bit. The arithmetic runs in
float64 and is stored in the arrays' dtype, as ``masks``' NumPy functions do. The
contract functions at the bottom are the ``numba`` backend's (``masks.bind_masks``). The
module uses no helper of the other kernel modules, so numba's own cache stamp (this
file) covers it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import numba_safety
from .masks import KernelMasks

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_UNIT = 1.0 / 9007199254740992.0
_TWO_PI = 2.0 * np.pi
#: elements per parallel task (a fixed cut: tasks never share an output element)
_BLOCK = 4096


@njit(cache=True)
def _uniform(key, i):
    """Element i's uniform number in [0, 1) for ``key`` (uint64): masks.uniforms."""
    z = key + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _UNIT


@njit(parallel=True, cache=True)
def _dropout_fwd(x, key, scale, keep, y, mask):
    """Flat arrays: mask[i] = uniform(key, i) < keep; y[i] = x[i] * scale there, else 0."""
    n = x.shape[0]
    k = np.uint64(key)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            kept = _uniform(k, i) < keep  # one store each, no branch: LLVM vectorizes the loop
            mask[i] = kept  # (stores in an if / else measured 4x slower)
            y[i] = x[i] * scale if kept else 0.0


@njit(parallel=True, cache=True)
def _dropout_bwd(g, mask, scale, out):
    """Flat arrays: out[i] = g[i] * scale where mask[i], else 0."""
    n = g.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            out[i] = g[i] * scale if mask[i] != 0 else 0


@njit(parallel=True, cache=True)
def _add_noise(x, key, mean, std, y):
    """Flat arrays: y[i] = x[i] + (mean + std * z_i), z from Box-Muller on the uniform pairs
    (2j, 2j + 1): cos for element 2j, sin for 2j + 1 (masks.normals)."""
    n = x.shape[0]
    k = np.uint64(key)
    pairs = (n + 1) // 2
    for b in prange((pairs + _BLOCK - 1) // _BLOCK):
        for j in range(b * _BLOCK, min(pairs, (b + 1) * _BLOCK)):
            i = 2 * j
            r = np.sqrt(-2.0 * np.log(1.0 - _uniform(k, i)))
            t = _TWO_PI * _uniform(k, i + 1)
            y[i] = x[i] + (mean + std * (r * np.cos(t)))
            if i + 1 < n:
                y[i + 1] = x[i + 1] + (mean + std * (r * np.sin(t)))


numba_safety.guard_caches(__package__)  # these kernels too: a damaged cache entry recompiles

_HOST = KernelMasks(_dropout_fwd, _dropout_bwd, _add_noise)


#: the contract functions (``masks.MASK_FUNCTIONS``)
dropout_forward = _HOST.dropout_forward
dropout_backward = _HOST.dropout_backward
add_noise = _HOST.add_noise
