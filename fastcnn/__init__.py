"""fastcnn: a from-scratch CNN library with Numba CPU kernels.

Importing it changes nothing in the process (no environment variable, no allocator
setting): process policy lives in ``fastcnn.runtime`` and is applied by training and
the ``fastcnn`` command, unless switched off (docs/runtime.md).
"""

from . import runtime
from .model import CnnModel, CnnModelBasic
from .reg_model import CnnRegModel
from .train import History, TrainingDiverged

__version__ = "0.1.0"

__all__ = ["CnnModel", "CnnModelBasic", "CnnRegModel", "History", "TrainingDiverged", "__version__",
           "runtime"]
