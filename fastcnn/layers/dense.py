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
        a, ctx = self.linear(x)
        y = self.activate(a)
        return y, (ctx, y)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        ctx, y = aux
        return self.linear_backward(self.grad_activation(g_y, y), ctx, input_grad, workspace)

    def linear(self, x: np.ndarray, workspace=None):
        """``(a, ctx)``: the pre-activation ``a = x @ w + b`` [mb, width] (a new array) and what
        ``linear_backward`` needs (the forward without its activation: ``fastcnn.steps``)."""
        x2 = x.reshape(x.shape[0], -1)
        a = self.ops.matmul(x2, self.params["w"])
        a += self.params["b"]
        return a, (x2, x.shape)

    def linear_backward(self, g_a: np.ndarray, ctx, input_grad: bool = True, workspace=None):
        """``(g_x, grads)`` from the pre-activation's gradient ``g_a`` [mb, width]."""
        x2, x_shape = ctx
        w = self.params["w"]
        g_w = self.ops.matmul(x2.T, g_a, out=self.grad_buffer(workspace, "g_w", w.shape))
        grads = {"w": g_w, "b": g_a.sum(axis=0)}
        if not input_grad:
            return None, grads
        g_x2 = self.ops.matmul(g_a, w.T, out=self.buffer(workspace, "g_x", x2.shape))
        return g_x2.reshape(x_shape), grads
