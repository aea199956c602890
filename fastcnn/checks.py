"""Argument checks shared by the hconfig grammar and the kernels."""

from __future__ import annotations

import numpy as np


def is_int(value) -> bool:
    """True for Python and NumPy integers; False for bools, floats and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
