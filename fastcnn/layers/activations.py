"""Activation functions and their derivatives, looked up by name.

Each derivative takes the activation's *output* ``y`` (as the seed does), so a
layer only keeps ``y`` for its backward pass. Shapes are preserved.
"""

from __future__ import annotations

import numpy as np

from ..mathutil import sigmoid


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_derv(y: np.ndarray) -> np.ndarray:
    return (y > 0).astype(y.dtype)


def sigmoid_derv(y: np.ndarray) -> np.ndarray:
    return y * (1 - y)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_derv(y: np.ndarray) -> np.ndarray:
    return 1 - y * y


def identity(x: np.ndarray) -> np.ndarray:
    return x


def identity_derv(y: np.ndarray):
    return 1


#: name -> (function, derivative from the output)
ACTIVATIONS = {
    "relu": (relu, relu_derv),
    "sigmoid": (sigmoid, sigmoid_derv),
    "tanh": (tanh, tanh_derv),
    "none": (identity, identity_derv),
}

#: init gain per activation for the scaled-normal ('he') initializer
INIT_GAIN = {"relu": 2.0, "sigmoid": 1.0, "tanh": 1.0, "none": 1.0}
