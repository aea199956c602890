"""Composite layers: ``serial``, ``parallel``, ``add``, ``loop`` and ``custom`` (the book's ch. 9).

A composite is a ``Layer`` whose work is its children's, built from the child
specs ``fastcnn.macros.parse_composite`` validated; children are looked up in
the same ``LAYERS`` table as top-level layers, so a composite holds any layer,
composites included. To the model it is one layer and one step: its
``params`` hold every descendant's parameters under relative names
(``1_parallel/0_conv/k``), so the model's keys are ``layer03_serial/1_parallel/0_conv/k``,
which is also each nested layer's ``key`` + ``/k`` (workspace buffers use the same,
unique, keys). ``forward``/``backward`` keep the ``Layer`` contract; every sum
is computed out of place (the book's add summed onto a child's output, E5).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import Layer


class Composite(Layer):
    """Shared: building children and naming their parameters."""

    def build(self, rng, init) -> tuple:
        self.children: list[Layer] = []
        self._prefixes: list[str] = []
        return self.build_children(rng, init)

    def build_children(self, rng, init) -> tuple:
        raise NotImplementedError

    def add_child(self, spec, pos: int, shape, rng, init) -> Layer:
        """Build child ``spec`` at position ``pos`` on input ``shape``; adopt its parameters."""
        from . import LAYERS  # here: this module is part of that table

        placed = replace(spec, index=self.spec.index, path=(*self.spec.path, pos), parent=self.key)
        child = LAYERS[placed.type](placed, tuple(shape), ops=self.ops, dtype=self.dtype, rng=rng, init=init)
        prefix = f"{pos}_{placed.type}"
        self.params.update({f"{prefix}/{name}": a for name, a in child.params.items()})
        self.children.append(child)
        self._prefixes.append(prefix)
        return child

    def collect(self, i: int, child_grads: dict, into: dict) -> None:
        prefix = self._prefixes[i]
        into.update({f"{prefix}/{name}": g for name, g in child_grads.items()})

    def walk(self):
        """Every layer below this one, depth first, in child order."""
        for child in self.children:
            yield child
            if isinstance(child, Composite):
                yield from child.walk()


class Serial(Composite):
    """The children one after another; the output is the last one's."""

    def build_children(self, rng, init) -> tuple:
        shape = self.input_shape
        for pos, spec in enumerate(self.spec.children):
            shape = self.add_child(spec, pos, shape, rng, init).output_shape
        return tuple(shape)

    def forward(self, x: np.ndarray, workspace=None):
        auxes = []
        for child in self.children:
            x, aux = child.forward(x, workspace)
            auxes.append(aux)
        return x, auxes

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        grads: dict = {}
        g = g_y
        for i in reversed(range(len(self.children))):
            g, child_grads = self.children[i].backward(g, aux[i], input_grad=input_grad or i > 0,
                                                       workspace=workspace)
            self.collect(i, child_grads, grads)
        return g, grads


class Loop(Serial):
    """Its one child built ``repeat`` times, separate parameters each, chained."""

    def build_children(self, rng, init) -> tuple:
        shape = self.input_shape
        for pos in range(int(self.spec.settings.get("repeat", 1))):
            shape = self.add_child(self.spec.children[0], pos, shape, rng, init).output_shape
        return tuple(shape)


class Custom(Serial):
    """A macro's expansion (one child, ``fastcnn.macros``), run as it is."""

    @property
    def macro_name(self) -> str:
        return self.spec.settings["name"]


def _sum_into(total, owned: bool, g):
    """``total + g``, in place only on an array this layer made (``owned``)."""
    if g is None:
        return total, owned
    if total is None:
        return g, False
    if owned:
        total += g
        return total, True
    return total + g, True


class Parallel(Composite):
    """Every child on the same input; outputs joined on the last (channel) axis in child
    order. Backward gives each child its own channel slice (the book's offset never moved, E3)
    and sums the children's input gradients."""

    def build_children(self, rng, init) -> tuple:
        shapes = [self.add_child(spec, pos, self.input_shape, rng, init).output_shape
                  for pos, spec in enumerate(self.spec.children)]
        first = shapes[0]
        for shape in shapes:
            if len(shape) != len(first) or tuple(shape[:-1]) != tuple(first[:-1]):
                listed = ", ".join(f"child {i} {list(s)}" for i, s in enumerate(shapes))
                raise self.spec.error(None, "branch outputs cannot be joined on the channel axis: they must "
                                      f"agree on every axis but the last ({listed})")
        bounds = np.cumsum([0] + [int(s[-1]) for s in shapes])
        self.slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return (*first[:-1], int(bounds[-1]))

    def forward(self, x: np.ndarray, workspace=None):
        outs, auxes = [], []
        for child in self.children:
            y, aux = child.forward(x, workspace)
            outs.append(y)
            auxes.append(aux)
        return np.concatenate(outs, axis=-1), auxes

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        grads: dict = {}
        total, owned = None, False
        for i, child in enumerate(self.children):
            start, stop = self.slices[i]
            g = np.ascontiguousarray(g_y[..., start:stop])
            g_x, child_grads = child.backward(g, aux[i], input_grad=input_grad, workspace=workspace)
            self.collect(i, child_grads, grads)
            total, owned = _sum_into(total, owned, g_x)
        return (total if input_grad else None), grads


class Add(Composite):
    """The first child's output plus every other child's (and the input's, with ``x``), each
    tiled whole along the channel axis to the first's width; then ``actions`` (``A``
    activation, ``B`` batch_normal with scale/shift). Backward sums the gradient over
    each term's tile copies."""

    def build_children(self, rng, init) -> tuple:
        self.use_x = bool(self.spec.settings.get("x", True))
        shapes = [self.add_child(spec, pos, self.input_shape, rng, init).output_shape
                  for pos, spec in enumerate(self.spec.children)]
        out = tuple(shapes[0])
        terms = [(f"child {i}", s) for i, s in enumerate(shapes)]
        if self.use_x:
            terms.append(("the input (x: True)", self.input_shape))
        self.times = []
        for name, shape in terms:
            chn = int(shape[-1])
            if len(shape) != len(out) or tuple(shape[:-1]) != out[:-1] or out[-1] % chn:
                raise self.spec.error(
                    "x" if name.startswith("the input") else None,
                    f"cannot add {name} {list(shape)} to child 0 {list(out)}: every term needs the same "
                    "axes but the last, and a channel count that divides the first child's")
            self.times.append(out[-1] // chn)
        self.chain = None
        letters = self.spec.settings.get("actions", "")
        if letters:
            from .actions import ActionChain

            self.chain = ActionChain(self, letters, out, rescale=True, rng=rng, init=init)
        return out

    @staticmethod
    def _add_tiled(total: np.ndarray, term: np.ndarray, times: int) -> None:
        if times == 1:
            total += term
        else:  # channel j gets term[..., j % chn]: numpy tile on the last axis
            total.reshape(*total.shape[:-1], times, term.shape[-1])[...] += term[..., None, :]

    @staticmethod
    def _fold(g: np.ndarray, times: int) -> np.ndarray:
        if times == 1:
            return g
        return np.ascontiguousarray(g.reshape(*g.shape[:-1], times, g.shape[-1] // times).sum(axis=-2))

    def forward(self, x: np.ndarray, workspace=None):
        auxes = []
        total = None
        for i, child in enumerate(self.children):
            y, aux = child.forward(x, workspace)
            auxes.append(aux)
            if total is None:
                total = np.array(y, dtype=self.dtype, copy=True)  # out of place: y stays the child's
            else:
                self._add_tiled(total, y, self.times[i])
        if self.use_x:
            self._add_tiled(total, x, self.times[-1])
        chain_aux = None
        if self.chain is not None:
            total, chain_aux = self.chain.forward(total, fresh=True)
        return total, (auxes, chain_aux)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        auxes, chain_aux = aux
        grads: dict = {}
        g = g_y
        if self.chain is not None:
            g, grads = self.chain.backward(g, chain_aux, True)
        total, owned = None, False
        for i, child in enumerate(self.children):
            g_x, child_grads = child.backward(self._fold(g, self.times[i]), auxes[i], input_grad=input_grad,
                                              workspace=workspace)
            self.collect(i, child_grads, grads)
            total, owned = _sum_into(total, owned, g_x)
        if self.use_x and input_grad:
            total, owned = _sum_into(total, owned, self._fold(g, self.times[-1]))
        return (total if input_grad else None), grads


#: composite hconfig type -> layer class (joined into ``fastcnn.layers.LAYERS``)
COMPOSITES: dict[str, type[Layer]] = {
    "serial": Serial, "parallel": Parallel, "add": Add, "loop": Loop, "custom": Custom,
}
