"""fastcnn: a from-scratch CNN library with Numba CPU kernels."""

__version__ = "0.1.0"
