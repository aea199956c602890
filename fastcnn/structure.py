"""The book's ``dump_structure``: a model's layer tree with shapes and parameter counts.

Format (BOOK-CH8-9 6.2): a composite prints its type (``custom`` adds the macro
name) two spaces per depth, then its children one level deeper; a leaf prints
``{index}: {type}, {input shape}=>{output shape}{pm}`` with a 1-based index
counted depth first over every leaf, the output layer included. Shapes print as
lists, except a leaf fed the model's input directly, which prints the input
shape as a tuple (the book printed the dataset's tuple there). ``pm`` is
`` pm:{fan_in}x{width}+{width}={count}`` for full layers,
`` pm:{kh}x{kw}x{xchn}x{ychn}+{ychn}={count}`` for conv layers, empty otherwise;
the closing line is ``Total parameter count: {n}``.

The count is the book's: the weights and biases of full and conv layers only
(batch-norm scale, shift and statistics, dropout and noise add nothing), so
``LA`` and ``LAB`` builds of a macro have the same total.

``dump_hconfigs`` prints the same for hconfigs without a dataset or a model,
building the layers on lazily allocated zero weights, so VGG-19's 143.7 million
parameters cost no memory.
"""

from __future__ import annotations

import sys

import numpy as np

from .hconfig import parse_hconfigs, place_output
from .layers import build_layers
from .layers.composite import Composite, Custom, Serial
from .layers.conv import Conv2D
from .layers.dense import Dense

#: parameter names the book counts, per layer class
COUNTED = {Dense: ("w", "b"), Conv2D: ("k", "b")}


def leaves(layers):
    """Every non-composite layer, depth first, in child order."""
    for layer in layers:
        if isinstance(layer, Composite):
            yield from leaves(layer.children)
        else:
            yield layer


def layer_param_count(layer) -> int:
    """The book's count for one leaf: weights + biases of a full or conv layer, else 0."""
    names = COUNTED.get(type(layer), ())
    return sum(int(layer.params[n].size) for n in names if n in layer.params)


def param_count(layers) -> int:
    """The book's total parameter count of ``layers`` (nested layers included)."""
    return sum(layer_param_count(la) for la in leaves(layers))


def _pm(layer) -> str:
    count = layer_param_count(layer)
    if isinstance(layer, Dense):
        fan_in, width = layer.params["w"].shape
        return f" pm:{fan_in}x{width}+{width}={count}"
    if isinstance(layer, Conv2D):
        kh, kw, xchn, ychn = layer.params["k"].shape
        return f" pm:{kh}x{kw}x{xchn}x{ychn}+{ychn}={count}"
    return ""


def _shape(shape, as_tuple: bool) -> str:
    shape = [int(n) for n in shape]
    return str(tuple(shape)) if as_tuple else str(shape)


def _lines(layer, depth: int, fed_input: bool, counter: list, out: list) -> None:
    pad = "  " * depth
    if isinstance(layer, Composite):
        out.append(pad + layer.spec.type + (f" {layer.macro_name}" if isinstance(layer, Custom) else ""))
        for i, child in enumerate(layer.children):
            # serial, loop, custom: only the first child sees the composite's input
            child_fed = fed_input and (i == 0 or not isinstance(layer, Serial))
            _lines(child, depth + 1, child_fed, counter, out)
        return
    counter[0] += 1
    out.append(f"{pad}{counter[0]}: {layer.spec.type}, {_shape(layer.input_shape, fed_input)}"
               f"=>{_shape(layer.output_shape, False)}{_pm(layer)}")


def structure_lines(layers, tuple_input: bool = True) -> list[str]:
    """The dump of ``layers`` (the model's, output layer last), one string per line.
    ``tuple_input=False`` prints the model's input shape as a list too (the book's
    DummyDataset dumps)."""
    out: list[str] = []
    counter = [0]
    for i, layer in enumerate(layers):
        _lines(layer, 0, tuple_input and i == 0, counter, out)
    out.append(f"Total parameter count: {param_count(layers)}")
    return out


def dump_structure(layers, file=None, tuple_input: bool = True) -> str:
    """Print the structure of ``layers`` to ``file`` (default stdout) and return it."""
    text = "\n".join(structure_lines(layers, tuple_input))
    print(text, file=file if file is not None else sys.stdout)
    return text


class _LazyZeros:
    """Stands in for a generator in ``Layer.normal``: zero weights the OS allocates lazily."""

    def __init__(self, shape):
        self.shape = shape

    def astype(self, dtype, copy=True):
        return np.zeros(self.shape, dtype)


class ShapeOnlyRng:
    """A generator whose ``normal`` gives untouched zeros: builds a model's layers for their
    shapes and counts only (``dump_hconfigs``)."""

    def normal(self, loc=0.0, scale=1.0, size=None):
        return _LazyZeros(size)

    def random(self, size=None):
        return np.zeros(size) if size is not None else 0.0


def build_shape_only(hconfigs, input_shape, output_count: int, *, backend: str = "numpy") -> list:
    """The layers of ``hconfigs`` plus the output layer, on zero weights, for dumps."""
    from .kernels.ops import Ops

    specs = place_output(parse_hconfigs(hconfigs), int(output_count))  # last, or at ['output'] (deepconvnet)
    return build_layers(specs, tuple(input_shape), ops=Ops.bind(backend), dtype="float32", rng=ShapeOnlyRng(),
                        init="he")


def dump_hconfigs(hconfigs, input_shape, output_count: int, file=None) -> str:
    """``dump_structure`` of ``hconfigs`` on ``input_shape`` with ``output_count`` outputs,
    without a dataset and without memory for the weights."""
    return dump_structure(build_shape_only(hconfigs, input_shape, output_count), file, tuple_input=False)
