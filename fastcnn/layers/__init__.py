"""Layer types by hconfig name, and building them from specs."""

from __future__ import annotations

from ..hconfig import LayerSpec
from .activations import ACTIVATIONS
from .base import Layer
from .batchnorm import BatchNormal
from .composite import COMPOSITES, Composite
from .conv import Conv2D
from .dense import Dense
from .pool import AvgPool, MaxPool
from .regularization import Dropout, Noise

__all__ = ["ACTIVATIONS", "LAYERS", "AvgPool", "BatchNormal", "Composite", "Conv2D", "Dense", "Dropout",
           "Layer", "MaxPool", "Noise", "build_layers"]

#: hconfig type name -> layer class
LAYERS: dict[str, type[Layer]] = {"full": Dense, "conv": Conv2D, "max": MaxPool, "avg": AvgPool}
LAYERS.update({"dropout": Dropout, "noise": Noise, "batch_normal": BatchNormal})  # the book's chapter 8
LAYERS.update(COMPOSITES)  # serial, parallel, add, loop, custom: the book's chapter 9


def build_layers(specs: list[LayerSpec], input_shape, **options) -> list[Layer]:
    """Instantiate ``specs`` in order, each from the previous layer's output shape.

    ``options`` (ops: the model's bound backend, dtype, rng, init) go to every
    layer; parameters are drawn from ``rng`` in layer order.
    """
    layers = []
    shape = tuple(input_shape)
    for spec in specs:
        layer = LAYERS[spec.type](spec, shape, **options)
        layers.append(layer)
        shape = layer.output_shape
    return layers
