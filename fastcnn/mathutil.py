"""Small numeric helpers shared by the layers, the modes and the report."""

from __future__ import annotations

import numpy as np


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))`` for any ``x``, without overflow: the one sigmoid of the library.

    ``exp`` only ever sees ``-|x|``, so it never overflows (it may underflow to 0,
    which gives the exact limits 0 and 1 for large ``|x|``). A float input keeps
    its dtype; anything else is computed in float64.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    e = np.exp(-np.abs(x))  # in (0, 1]
    # x >= 0: 1 / (1 + exp(-x));  x < 0: exp(x) / (1 + exp(x))  (the same value, no overflow)
    return np.where(x >= 0, 1, e) / (1 + e)
