"""fastcnn: a from-scratch CNN library with Numba CPU kernels."""

import os as _os

__version__ = "0.1.0"

# The numba kernels run on the OpenMP threading layer. With OpenMP's default
# active waiting, its idle threads spin between parallel regions and fight
# NumPy's BLAS threads for the cores: on a 2-core machine a digits epoch went
# from 0.1 s to 3 s. Passive waiting avoids that; an explicit setting wins.
# (Read by the OpenMP runtime when numba first loads it, after this import.)
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .model import CnnModel, CnnModelBasic  # noqa: E402
from .train import History, TrainingDiverged  # noqa: E402

__all__ = ["CnnModel", "CnnModelBasic", "History", "TrainingDiverged", "__version__"]
