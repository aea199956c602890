"""The model's step list: its layers grouped into the units a forward and a backward run.

Today every step is one layer (``LayerStep``). The list is the seam for fused
kernels: two or three adjacent layers (conv, its activation, the pooling after
it) become one step that runs them in one parallel pass, with this same
interface, chosen by ``plan_steps`` from the layers and what the backend
offers. Training (``CnnModel.compute_step``) runs the steps; drawing feature
maps runs the layers one by one, since it needs every layer's output.
"""

from __future__ import annotations

import numpy as np


class LayerStep:
    """One layer as one step: ``forward(x, workspace) -> (y, aux)`` and
    ``backward(g_y, aux, input_grad, workspace) -> (g_x, grads)``, grads keyed like
    ``CnnModel.params`` (``layer03_conv/k``)."""

    def __init__(self, layer):
        self.layers = (layer,)
        self._layer = layer
        self._keys = {name: f"{layer.key}/{name}" for name in layer.params}

    def __repr__(self) -> str:
        return f"LayerStep({self._layer.key})"

    def forward(self, x: np.ndarray, workspace=None):
        return self._layer.forward(x, workspace)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool, workspace=None):
        g_x, grads = self._layer.backward(g_y, aux, input_grad=input_grad, workspace=workspace)
        return g_x, {self._keys[name]: g for name, g in grads.items()}


def plan_steps(layers: list, ops) -> list[LayerStep]:
    """The steps that run ``layers`` on the backend ``ops`` (one layer each, for now)."""
    del ops  # the fused steps will look at it: which fused kernels the backend has
    return [LayerStep(layer) for layer in layers]
