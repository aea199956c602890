"""The book's stochastic regularization layers: ``dropout`` and ``noise`` (BOOK-CH8-9 3.3, 3.4).

Both keep the shape of their input, have no parameters, and act only in training mode
(``fastcnn.phase``): in inference mode (``predict``, ``test``, ``visualize``, validation)
they return their input array itself. Their random numbers are counter-based
(``fastcnn.kernels.masks``): each call draws one key from the model's seeded generator (the
one that drew the initial weights, continued), and element i's number comes from (key, i),
drawn and applied in one pass by the backend (one parallel kernel on the numba backends):
the same masks on every backend, dtype and thread count. Right after a conv + pooling pair
that the backend fuses (pooling without an activation of its own), the fused step applies
them as it writes the pooled output (``fastcnn.steps.ConvPoolStep``): it asks the layer for
its ``draw``, so the generator is read at the same point, and the numbers are the same.
"""

from __future__ import annotations

import numpy as np

from ..kernels.masks import KEY_LIMIT, Draw, bind_masks
from ..phase import is_training
from ..regularize import keep_prob, noise_settings
from .base import Layer


class Dropout(Layer):
    """Inverted dropout: in training ``y = x * mask / keep_prob``, ``mask ~ Bernoulli(keep_prob)``
    drawn for every element of ``x``, batch axis included (the book's ``x.shape`` mask, E8),
    kept as uint8 for the backward, ``g_x = g_y * mask / keep_prob``. In inference ``y = x``."""

    def build(self, rng, init) -> tuple:
        self.keep_prob = keep_prob(self.spec)
        self.rng = rng
        self.masks = bind_masks(self.ops.name)
        return self.input_shape

    def draw(self) -> Draw | None:
        """This call's numbers (a key drawn from the generator), or None where y = x (inference,
        keep_prob 1)."""
        if not is_training() or self.keep_prob == 1.0:
            return None
        return Draw.dropout(int(self.rng.integers(0, KEY_LIMIT)), self.keep_prob)

    def forward(self, x: np.ndarray, workspace=None):
        draw = self.draw()
        if draw is None:
            return x, None
        return self.masks.dropout_forward(x, draw.key, self.keep_prob)  # (y, uint8 mask)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        if not input_grad:
            return None, {}
        return (g_y if aux is None else self.masks.dropout_backward(g_y, aux, self.keep_prob)), {}


class Noise(Layer):
    """Additive Gaussian noise: in training, with probability ``ratio`` per forward call
    (one uniform draw from the generator, then the call's key), ``y = x + N(mean, std)``
    drawn for every element; else ``y = x``.
    Backward is the identity (the noise does not depend on ``x``)."""

    def build(self, rng, init) -> tuple:
        self.mean, self.std, self.ratio = noise_settings(self.spec)
        self.rng = rng
        self.masks = bind_masks(self.ops.name)
        return self.input_shape

    def draw(self) -> Draw | None:
        """This call's numbers (the ratio's uniform, then a key, from the generator), or None
        where y = x (inference, or the uniform >= ratio)."""
        if not is_training() or self.rng.random() >= self.ratio:
            return None
        return Draw.noise(int(self.rng.integers(0, KEY_LIMIT)), self.mean, self.std)

    def forward(self, x: np.ndarray, workspace=None):
        draw = self.draw()
        if draw is None:
            return x, None
        return self.masks.add_noise(x, draw.key, self.mean, self.std), None

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        return (g_y if input_grad else None), {}
