"""Convolution layer over NHWC inputs; the arithmetic is the backend's (``self.ops``)."""

from __future__ import annotations

import numpy as np

from ..hconfig import actions, padding, pair, positive_int
from ..kernels.shapes import conv_geometry
from .base import PRE_ACTIVATION, Layer


class Conv2D(Layer):
    """``k [kh, kw, xchn, ychn]``, ``b [ychn]``; ``y = act(conv(x, k) + b)``."""

    makes_maps = True

    def build(self, rng, init) -> tuple:
        xh, xw, xchn = self.needs_image()
        kh, kw = pair(self.spec, "ksize")
        ychn = positive_int(self.spec, "chn")
        self.stride = pair(self.spec, "stride", 1)
        self.padding = padding(self.spec, "same")
        try:  # resolved once: the geometry holds for any batch size
            self.geo = geo = conv_geometry((1, xh, xw, xchn), kh, kw, self.stride, self.padding)
        except ValueError as exc:
            raise self.spec.error("ksize", f"{exc}") from None
        fan_in = kh * kw * xchn
        self.params["k"] = self.normal(rng, init, (kh, kw, xchn, ychn), fan_in)
        self.params["b"] = self.zeros((ychn,))
        self.conv_output_shape = (geo.yh, geo.yw, ychn)
        #: the book's ``actions`` letters; anything but ``'LA'`` runs as an ``ActionChain``
        self.actions = actions(self.spec, "LA", "LAB")
        self.chain = None
        if self.actions != "LA":
            from .actions import ActionChain  # here: it builds batch_normal layers from this package

            self.chain = ActionChain(self, self.actions, self.input_shape, rescale=False, rng=rng, init=init)
        return self.conv_output_shape

    def forward(self, x: np.ndarray, workspace=None):
        if self.chain is not None:
            return self.chain.forward(x)
        a, ctx = self.linear(x, workspace)
        y = self.activate(a, workspace)
        return y, (ctx, y)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        if self.chain is not None:
            return self.chain.backward(g_y, aux, bool(input_grad))
        ctx, y = aux
        return self.linear_backward(self.grad_activation(g_y, y, workspace), ctx, input_grad, workspace)

    def linear(self, x: np.ndarray, workspace=None):
        """``(a, ctx)``: the pre-activation ``a = conv(x, k) + b`` (the workspace array ``pre``) and
        what ``linear_backward`` needs; the default actions 'LA' only (the forward without its
        activation: ``fastcnn.steps``)."""
        a = self.ops.conv2d_forward(
            x, self.params["k"], self.params["b"], self.geo,
            out=self.buffer(workspace, PRE_ACTIVATION, (x.shape[0], *self.output_shape)),
        )
        return a, x

    def linear_backward(self, g_a: np.ndarray, ctx, input_grad: bool = True, workspace=None):
        """``(g_x, grads)`` from the pre-activation's gradient ``g_a``."""
        x = ctx
        g_x, g_k, g_b = self.ops.conv2d_backward(
            g_a, x, self.params["k"], self.geo, bool(input_grad),
            out=self.buffer(workspace, "g_x", x.shape) if input_grad else None,
        )
        return g_x, {"k": g_k, "b": g_b}
