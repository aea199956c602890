"""fastcnn: a from-scratch CNN library with Numba CPU kernels."""

__version__ = "0.1.0"

from .model import CnnModel, CnnModelBasic  # noqa: E402
from .train import History, TrainingDiverged  # noqa: E402

__all__ = ["CnnModel", "CnnModelBasic", "History", "TrainingDiverged", "__version__"]
