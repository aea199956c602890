"""Steps around the kernels, in NumPy: ReLU, the Adam update and the dense matmul.

The ``adhoc``, ``better`` and ``numpy`` backends share these; the numba backend
has fused, parallel versions with the same names (one pass over memory instead
of several, on every core).
"""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` into ``out`` (which may be ``x`` itself: a fresh pre-activation the
    caller gives up), or a new array."""
    return np.maximum(x, 0, out=out)


def relu_backward(g_y: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient through ReLU from its output ``y``: ``g_y * (y > 0)``, into ``out`` if given."""
    if out is None:
        return (g_y * (y > 0)).astype(y.dtype, copy=False)
    if out.shape != y.shape or out.dtype != y.dtype:
        raise ValueError(f"out must be an array of shape {y.shape} and dtype {y.dtype}")
    # the product is formed in the dtype of g_y and then cast, as astype does above
    return np.multiply(g_y, y > 0, out=out)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for the dense layers (BLAS with its own threads), into ``out`` when given."""
    return np.matmul(a, b, out=out)


def adam_update(p, g, m, v, lr_t: float, beta1: float, beta2: float, eps: float) -> None:
    """One Adam step in place on ``p``, ``m``, ``v`` (seed 004's rule, folded bias correction)."""
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    p -= lr_t * m / (np.sqrt(v) + eps)
