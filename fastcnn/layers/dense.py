"""Fully connected layer: ``y = act(x.reshape(mb, -1) @ w + b)``."""

from __future__ import annotations

import numpy as np

from ..hconfig import positive_int
from .base import Layer


class Dense(Layer):
    """``w [in, width]``, ``b [width]``; any input rank is flattened per sample."""

    def build(self, rng, init) -> tuple:
        width = positive_int(self.spec, "width")
        fan_in = int(np.prod(self.input_shape))
        self.params["w"] = self.normal(rng, init, (fan_in, width), fan_in)
        self.params["b"] = self.zeros((width,))
        return (width,)

    # the forward ignores workspace: its output is [mb, width], small
    def forward(self, x: np.ndarray, workspace=None):
        x2 = x.reshape(x.shape[0], -1)
        y = self.ops.matmul(x2, self.params["w"])
        y += self.params["b"]
        y = self.activate(y)
        return y, (x2, y, x.shape)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        x2, y, x_shape = aux
        g_affine = self.grad_activation(g_y, y)
        w = self.params["w"]
        g_w = self.ops.matmul(x2.T, g_affine, out=self.grad_buffer(workspace, "g_w", w.shape))
        grads = {"w": g_w, "b": g_affine.sum(axis=0)}
        if not input_grad:
            return None, grads
        g_x2 = self.ops.matmul(g_affine, w.T, out=self.buffer(workspace, "g_x", x2.shape))
        g_x = g_x2.reshape(x_shape)
        return g_x, grads
