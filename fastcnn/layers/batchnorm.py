"""``batch_normal``: batch normalization over the last axis, with moving statistics
(BOOK-CH8-9 3.5; the per-channel work is the backend's, ``fastcnn.kernels.norm``).

Training mode (``fastcnn.phase``): per channel (the last axis: channels of NHWC maps,
features of flat inputs) the batch mean and population variance over every other axis;
the moving statistics follow ``mavg += exp_ratio * (mean - mavg)`` (same for ``mvar``).
Inference mode: ``mavg``/``mvar`` in their place, not updated. Both:
``norm = (x - mean) / sqrt(var + epsilon)``, ``y = scale * norm + shift`` (rescale) or
``y = norm``.

Parameters: ``scale`` and ``shift`` (with rescale) get gradients and are trained by the
model's optimizer like biases (the book: plain SGD at the learning rate, a documented
deviation); ``mavg`` and ``mvar`` are state, saved with the parameters, never given a
gradient. Backward: the exact gradient through the batch statistics (``exact=True``, the
default), or the book's simplified ``g_x = g_y * scale / std`` (``exact=False``, E7),
which ignores that mean and variance depend on ``x``. In inference mode the statistics
are constants and both are the same, exact, gradient.
"""

from __future__ import annotations

import numpy as np

from ..kernels.norm import bind_norm
from ..phase import is_training
from ..regularize import batch_normal_settings
from .base import Layer


class BatchNormal(Layer):
    """``mavg, mvar [chn]`` (state), ``scale, shift [chn]`` (trained, with rescale)."""

    def build(self, rng, init) -> tuple:
        self.rescale, self.epsilon, self.exp_ratio, self.exact = batch_normal_settings(self.spec)
        chn = self.input_shape[-1]
        self.chn = chn
        self.norm_ops = bind_norm(self.ops.name)
        self.params["mavg"] = self.zeros((chn,))
        self.params["mvar"] = np.ones((chn,), self.dtype)
        if self.rescale:
            self.params["scale"] = np.ones((chn,), self.dtype)
            self.params["shift"] = self.zeros((chn,))
        return self.input_shape

    def _rescale(self):
        if not self.rescale:
            return None, None
        return self.params["scale"], self.params["shift"]

    def forward(self, x: np.ndarray, workspace=None):
        x2 = x.reshape(-1, self.chn)
        training = is_training()
        if training:
            mean, var = self.norm_ops.bn_stats(x2)
            mavg, mvar = self.params["mavg"], self.params["mvar"]
            mavg += (self.exp_ratio * (mean - mavg)).astype(self.dtype)
            mvar += (self.exp_ratio * (var - mvar)).astype(self.dtype)
        else:
            mean = self.params["mavg"].astype(np.float64)
            var = self.params["mvar"].astype(np.float64)
        inv = 1.0 / np.sqrt(var + self.epsilon)
        norm, y = self.norm_ops.bn_normalize(x2, mean, inv, *self._rescale())
        return y.reshape(x.shape), (norm, inv, training)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        norm, inv, training = aux
        scale, _ = self._rescale()
        g_x, g_scale, g_shift = self.norm_ops.bn_backward(
            g_y.reshape(-1, self.chn), norm, inv, scale, self.exact and training)
        grads = {"scale": g_scale, "shift": g_shift} if self.rescale else {}
        return (g_x.reshape(g_y.shape) if input_grad else None), grads
