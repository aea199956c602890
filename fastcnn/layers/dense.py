"""Fully connected layer: ``y = act(x.reshape(mb, -1) @ w + b)``."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..hconfig import positive_int
from .base import Layer


class Dense(Layer):
    """``w [in, width]``, ``b [width]``; any input rank is flattened per sample."""

    def build(self, rng, init) -> tuple:
        width = positive_int(self.spec, "width")
        fan_in = int(np.prod(self.input_shape))
        self.params["w"] = self.normal(rng, init, (fan_in, width), fan_in)
        self.params["b"] = self.zeros((width,))
        self._matmul = kernels.get_backend(self.backend).matmul
        return (width,)

    # workspace is ignored: the dense outputs are small and come from the backend's matmul
    def forward(self, x: np.ndarray, workspace=None):
        x2 = x.reshape(x.shape[0], -1)
        y = self._matmul(x2, self.params["w"])
        y += self.params["b"]
        y = self.act(y)
        return y, (x2, y, x.shape)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        x2, y, x_shape = aux
        g_affine = self.grad_activation(g_y, y)
        grads = {"w": self._matmul(x2.T, g_affine), "b": g_affine.sum(axis=0)}
        if not input_grad:
            return None, grads
        g_x = self._matmul(g_affine, self.params["w"].T).reshape(x_shape)
        return g_x, grads
