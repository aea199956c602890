"""An ``actions`` string run left to right: the book's conv ``'LAB'`` and add ``'AB'``.

``L`` is the owner's convolution plus bias (``k``, ``b``, ``geo``), ``A`` its
activation (``actfunc``) and ``B`` a ``batch_normal`` layer built on the shape
the letters before it produce (conv: without scale/shift; add: with them, as
in the book). Every step keeps its own input or output for backward, so ``A``
differentiates the activation's own output even when ``B`` follows (the
book's add used the final output, erratum E6). A conv with the default
``'LA'`` does not come here: ``Conv2D`` runs its usual (fusable) path.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


class _Conv:
    """``L``: convolution and bias with the owner's parameters and geometry."""

    fresh = True  # its output is a new array nothing else holds

    def __init__(self, owner, shape):
        self.owner = owner
        self.output_shape = owner.conv_output_shape

    def forward(self, x):
        o = self.owner
        return o.ops.conv2d_forward(x, o.params["k"], o.params["b"], o.geo), x

    def backward(self, g, x, input_grad):
        o = self.owner
        g_x, g_k, g_b = o.ops.conv2d_backward(np.ascontiguousarray(g), x, o.params["k"], o.geo, input_grad)
        return g_x, {"k": g_k, "b": g_b}


class _Act:
    """``A``: the owner's activation (in place on a fresh array, else into a new one)."""

    fresh = True

    def __init__(self, owner, shape):
        self.owner = owner
        self.output_shape = shape

    def forward(self, x, fresh=False):
        y = self.owner.activate(x) if fresh else self.owner.act(x).astype(self.owner.dtype, copy=False)
        return y, y

    def backward(self, g, y, input_grad):
        return self.owner.grad_activation(np.ascontiguousarray(g), y), {}


class _Norm:
    """``B``: a ``batch_normal`` layer (``fastcnn.layers.batchnorm``) nested in the owner,
    keyed ``<owner>/bn_batch_normal``; its parameters are the owner's ``bn/<name>``."""

    fresh = False  # the batch-norm layer may keep its output for backward

    def __init__(self, owner, shape, rescale, rng, init):
        from . import LAYERS

        if "batch_normal" not in LAYERS:
            raise owner.spec.error("actions", "'B' needs the 'batch_normal' layer, which this build lacks")
        spec = replace(owner.spec, type="batch_normal", settings={"rescale": rescale}, children=(),
                       path=(*owner.spec.path, "bn"), parent=owner.key)
        self.layer = LAYERS["batch_normal"](spec, shape, ops=owner.ops, dtype=owner.dtype, rng=rng, init=init)
        self.output_shape = self.layer.output_shape

    def forward(self, x):
        return self.layer.forward(x)

    def backward(self, g, aux, input_grad):
        g_x, grads = self.layer.backward(np.ascontiguousarray(g), aux, input_grad=True)
        return g_x, {f"bn/{name}": a for name, a in grads.items()}


class ActionChain:
    """The steps of ``letters`` for ``owner`` (a conv or add layer) on input ``shape``.

    ``forward(x) -> (y, aux)``, ``backward(g, aux, input_grad) -> (g_x, grads)``;
    grads are keyed like the parameters the chain adds to ``owner.params``
    (``bn/...``) plus ``k``/``b`` for ``L``.
    """

    def __init__(self, owner, letters: str, shape, *, rescale: bool, rng, init):
        self.steps = []
        self.norms = []
        for letter in letters:
            if letter == "L":
                step = _Conv(owner, shape)
            elif letter == "A":
                step = _Act(owner, shape)
            else:
                step = _Norm(owner, shape, rescale, rng, init)
                self.norms.append(step.layer)
                owner.params.update({f"bn/{n}": a for n, a in step.layer.params.items()})
            self.steps.append(step)
            shape = step.output_shape
        self.output_shape = tuple(shape)

    def forward(self, x, fresh: bool = False):
        """``fresh``: ``x`` is a new array the chain may overwrite (an add's sum)."""
        auxes = []
        for step in self.steps:
            x, aux = step.forward(x, fresh) if isinstance(step, _Act) else step.forward(x)
            fresh = step.fresh
            auxes.append(aux)
        return x, auxes

    def backward(self, g, auxes, input_grad: bool = True):
        grads = {}
        for i in reversed(range(len(self.steps))):
            g, step_grads = self.steps[i].backward(g, auxes[i], input_grad or i > 0)
            grads.update(step_grads)
        return g, grads
