"""The model's step list: its layers grouped into the units a forward and a backward run.

A step is one layer (``LayerStep``) or, where the backend has fused kernels
(``Ops.fuses_conv_pool``: numba, numba-aot), a conv layer and the max or avg
pooling layer right after it (``ConvPoolStep``): conv, bias, the conv's
activation and the pooling run in one parallel pass per image, forward and
backward, so the conv-sized activation and its gradient never go through
memory. A dropout or noise layer right after such a pair (the pooling without an
activation of its own) joins the step: its numbers are drawn and applied as the
pooled output is written, and dropout's backward runs where the fused backward reads
the pooled gradient. Both give the same bits (the same draws from the model's
generator, at the same point). A dropout or noise layer right after a full or conv
layer whose forward ends in ReLU (and that fuses with no pooling) joins that layer
(``ReluMaskStep``): the ReLU and the draws run in one elementwise pass, and back,
dropout's and ReLU's backward in one, with the bits of the layers one by one.
``plan_steps`` chooses them from the layers and what the backend offers (a composite
layer, ``fastcnn.layers.composite``, is one ``LayerStep``; only adjacent top-level leaf
layers fuse). Training (``CnnModel.compute_step``) runs the steps; drawing feature maps
runs the layers one by one, since it needs every layer's output.
"""

from __future__ import annotations

import numpy as np

from .kernels.masks import DROPOUT
from .layers.base import PRE_ACTIVATION
from .layers.conv import Conv2D
from .layers.dense import Dense
from .layers.pool import AvgPool, MaxPool
from .layers.regularization import Dropout, Noise

#: pooling layer class -> the ``pool`` argument of the fused kernels
_POOLS = {MaxPool: "max", AvgPool: "avg"}
#: dtype of the fused kernels' ``code`` and dropout mask (a dtype object: the workspace's fast lookup key)
_CODE = np.dtype(np.uint8)
#: the layers a fused conv + pooling step applies to its pooled output (``masks.Draw``)
_DRAWS = (Dropout, Noise)
#: the layers whose forward ends in the backend's ReLU (with actfunc relu) that a ``ReluMaskStep`` takes
_RELU_LAYERS = (Dense, Conv2D)


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


class ConvPoolStep:
    """A conv layer and the pooling layer after it as one step, on the backend's fused kernels
    (``ops.conv_pool_forward`` / ``conv_pool_backward``); the interface of ``LayerStep``.

    Forward writes only the pooled output (the pooling layer's workspace array ``pre``) and a
    uint8 ``code`` (``<conv>/pool_code``: the max's choice and the activation's mask), not the
    conv output; backward writes the conv's input gradient (``<conv>/g_x``). The pooling
    layer's own activation (none by default) runs after the pooling, as in ``LayerStep``.

    ``after``: a dropout or noise layer that follows the pooling (which then has no activation),
    run inside the same kernels: its ``draw()`` (the generator's draws, at the point its own
    forward would make them) goes to the forward, which applies it to the pooled output as it
    writes it (dropout's uint8 mask: ``<dropout>/mask``); the backward takes dropout's mask and
    applies its backward to the incoming gradient first. Noise's backward is the identity.
    """

    def __init__(self, conv: Conv2D, pool, ops, after=None):
        self.layers = (conv, pool) if after is None else (conv, pool, after)
        self._conv, self._pool, self._ops, self._after = conv, pool, ops, after
        self._kind = _POOLS[type(pool)]
        self._act = conv.spec.actfunc
        self._keys = {name: f"{conv.key}/{name}" for name in conv.params}
        self._code_name = f"{conv.key}/pool_code"
        self._mask_name = None if after is None else f"{after.key}/mask"

    def __repr__(self) -> str:
        return f"ConvPoolStep({', '.join(layer.key for layer in self.layers)})"

    def forward(self, x: np.ndarray, workspace=None):
        conv, pool, ops = self._conv, self._pool, self._ops
        mb = x.shape[0]
        act = self._act
        code = mask = None
        if workspace is not None:
            shape = ops.conv_pool_code_shape(mb, conv.output_shape[2], conv.geo, act, self._kind, pool.geo)
            code = workspace.get(self._code_name, shape, _CODE)
        draw = None if self._after is None else self._after.draw()
        if draw is not None and draw.mode == DROPOUT:
            shape = (mb, *pool.output_shape)
            mask = np.empty(shape, _CODE) if workspace is None else workspace.get(self._mask_name, shape,
                                                                                   _CODE)
        pooled, code = ops.conv_pool_forward(
            x, conv.params["k"], conv.params["b"], conv.geo, act, self._kind, pool.geo,
            out=pool.buffer(workspace, PRE_ACTIVATION, (mb, *pool.output_shape)), code=code,
            draw=draw, mask=mask,
        )
        y = pool.activate(pooled, workspace)
        return y, (x, code, y, mask)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool, workspace=None):
        conv, pool = self._conv, self._pool
        x, code, y, mask = aux
        g_pooled = pool.grad_activation(g_y, y, workspace)
        keep = 1.0 if mask is None else self._after.keep_prob
        g_x, g_k, g_b = self._ops.conv_pool_backward(
            g_pooled, code, x, conv.params["k"], conv.geo, self._act, self._kind, pool.geo,
            bool(input_grad), out=conv.buffer(workspace, "g_x", x.shape) if input_grad else None,
            mask=mask, keep=keep,
        )
        return g_x, {self._keys["k"]: g_k, self._keys["b"]: g_b}


class ReluMaskStep:
    """A full or conv layer with ReLU and the dropout or noise layer right after it as one step, on
    the backend's fused elementwise kernels (``MaskOps.relu_draw_forward`` / ``relu_drop_backward``);
    the interface of ``LayerStep``.

    Forward: the layer's ``linear`` part (its pre-activation ``a``, kept for the backward), then
    ReLU and the draw in one pass into the layer's workspace array ``act`` (dropout's uint8 mask:
    ``<dropout>/mask``). Backward: dropout's and ReLU's backward in one pass (noise's is the
    identity: ReLU's alone, on ``a``) into ``<layer>/g_act``, then the layer's ``linear_backward``.
    The draw is made first (the layer draws nothing), so the generator is read as layer by layer;
    without one (inference, keep_prob 1, noise's ratio) the layer runs as in a ``LayerStep``.
    """

    def __init__(self, layer, after, ops):
        self.layers = (layer, after)
        self._layer, self._after, self._ops, self._masks = layer, after, ops, after.masks
        self._keys = {name: f"{layer.key}/{name}" for name in layer.params}
        self._mask_name = f"{after.key}/mask"

    def __repr__(self) -> str:
        return f"ReluMaskStep({self._layer.key}, {self._after.key})"

    def forward(self, x: np.ndarray, workspace=None):
        layer = self._layer
        draw = self._after.draw()
        if draw is None:  # y = relu(a): the layer's own forward; aux: (its aux, None, None)
            y, aux = layer.forward(x, workspace)
            return y, (aux, None, None)
        a, ctx = layer.linear(x, workspace)
        mask = None
        if draw.mode == DROPOUT:
            mask = np.empty(a.shape, _CODE) if workspace is None else workspace.get(self._mask_name, a.shape,
                                                                                   _CODE)
        y, mask = self._masks.relu_draw_forward(a, draw, out=layer.buffer(workspace, "act", a.shape),
                                                mask=mask)
        return y, (ctx, a, mask)

    def backward(self, g_y: np.ndarray, aux, input_grad: bool, workspace=None):
        layer = self._layer
        ctx, a, mask = aux
        if a is None:
            g_x, grads = layer.backward(g_y, ctx, input_grad=input_grad, workspace=workspace)
        else:
            out = layer.buffer(workspace, "g_act", a.shape)
            if mask is None:  # noise
                g_a = self._ops.relu_backward(g_y, a, out=out)  # a > 0 exactly where relu(a) > 0
            else:
                g_a = self._masks.relu_drop_backward(g_y, mask, self._after.keep_prob, a, out=out)
            g_x, grads = layer.linear_backward(g_a, ctx, input_grad, workspace)
        return g_x, {self._keys[name]: g for name, g in grads.items()}


def fusable(conv, pool, ops) -> bool:
    """True if ``conv`` and the next layer ``pool`` can run as one ``ConvPoolStep`` on ``ops``:
    the backend fuses, ``pool`` is a max or avg pooling without padding, and the backend's
    kernels serve the pair (``conv_pool_fusable``: a stride-1 conv with ReLU or no activation that
    the layers run on the per-image kernels, not through sgemm)."""
    return (ops.fuses_conv_pool and isinstance(conv, Conv2D) and type(pool) in _POOLS
            and conv.chain is None  # the default actions 'LA' (conv, then its activation) only
            and not any(pool.pads)
            and ops.conv_pool_fusable(conv.geo, conv.spec.actfunc, _POOLS[type(pool)], pool.geo,
                                      conv.input_shape[2]))


def absorbs(pool, layer) -> bool:
    """True if ``layer``, right after the fused ``pool``, can run inside its ``ConvPoolStep``: a
    dropout or noise layer, and the pooling has no activation of its own (the draws would come
    before it)."""
    return type(layer) in _DRAWS and pool.spec.actfunc == "none"


def takes_mask(layer, after) -> bool:
    """True if ``after``, right after ``layer``, can join it as one ``ReluMaskStep``: a dropout or
    noise layer whose backend fuses it with a ReLU (``MaskOps.relu_draw_forward``: numba,
    numba-aot), after a full or conv layer (default actions 'LA') with actfunc relu."""
    return (type(after) in _DRAWS and after.masks.relu_draw_forward is not None
            and type(layer) in _RELU_LAYERS and layer.spec.actfunc == "relu"
            and getattr(layer, "chain", None) is None)


def plan_steps(layers: list, ops, *, fuse: bool = True, masks: bool = True) -> list:
    """The steps that run ``layers`` on the backend ``ops``: a ``ConvPoolStep`` for every conv
    layer followed by a pooling layer the backend fuses with it (unless ``fuse`` is False),
    taking in the dropout or noise layer right after them (``absorbs``; unless ``masks`` is
    False); a ``ReluMaskStep`` for a full or conv layer with ReLU and the dropout or noise
    layer right after it (``takes_mask``; unless ``fuse`` or ``masks`` is False); a
    ``LayerStep`` for every other layer."""
    steps: list = []
    i = 0
    while i < len(layers):
        if fuse and i + 1 < len(layers) and fusable(layers[i], layers[i + 1], ops):
            after = layers[i + 2] if i + 2 < len(layers) else None
            after = after if masks and after is not None and absorbs(layers[i + 1], after) else None
            steps.append(ConvPoolStep(layers[i], layers[i + 1], ops, after))
            i += 2 if after is None else 3
        elif fuse and masks and i + 1 < len(layers) and takes_mask(layers[i], layers[i + 1]):
            steps.append(ReluMaskStep(layers[i], layers[i + 1], ops))
            i += 2
        else:
            steps.append(LayerStep(layers[i]))
            i += 1
    return steps
