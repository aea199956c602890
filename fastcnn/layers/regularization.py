"""The book's stochastic regularization layers: ``dropout`` and ``noise`` (BOOK-CH8-9 3.3, 3.4).

Both keep the shape of their input, have no parameters, and act only in training mode
(``fastcnn.phase``): in inference mode (``predict``, ``test``, ``visualize``, validation)
they return their input array itself. Their random numbers come from the model's seeded
generator (the one that drew the initial weights, continued), drawn in float64 in NumPy
on the calling thread: the same masks on every backend, dtype and thread count.
"""

from __future__ import annotations

import numpy as np

from ..phase import is_training
from ..regularize import keep_prob, noise_settings
from .base import Layer


class Dropout(Layer):
    """Inverted dropout: in training ``y = x * mask / keep_prob``, ``mask ~ Bernoulli(keep_prob)``
    drawn for every element of ``x``, batch axis included (the book's ``x.shape`` mask, E8);
    backward ``g_x = g_y * mask / keep_prob``. In inference ``y = x``."""

    def build(self, rng, init) -> tuple:
        self.keep_prob = keep_prob(self.spec)
        self.rng = rng
        return self.input_shape

    def draw_mask(self, shape) -> np.ndarray:
        """``mask / keep_prob`` in the layer's dtype: ``1 / keep_prob`` where kept, 0 elsewhere."""
        kept = self.rng.random(shape) < self.keep_prob
        return kept * self.dtype.type(1.0 / self.keep_prob)

    def forward(self, x: np.ndarray, workspace=None):
        if not is_training() or self.keep_prob == 1.0:
            return x, None
        mask = self.draw_mask(x.shape)
        return x * mask, mask

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        if not input_grad:
            return None, {}
        return (g_y if aux is None else g_y * aux), {}


class Noise(Layer):
    """Additive Gaussian noise: in training, with probability ``ratio`` per forward call
    (one uniform draw), ``y = x + N(mean, std)`` drawn for every element; else ``y = x``.
    Backward is the identity (the noise does not depend on ``x``)."""

    def build(self, rng, init) -> tuple:
        self.mean, self.std, self.ratio = noise_settings(self.spec)
        self.rng = rng
        return self.input_shape

    def forward(self, x: np.ndarray, workspace=None):
        if not is_training() or self.rng.random() >= self.ratio:
            return x, None
        noise = self.rng.normal(self.mean, self.std, x.shape).astype(self.dtype, copy=False)
        noise += x
        return noise, None

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        return (g_y if input_grad else None), {}
