"""What every layer shares: its spec, shapes, parameters and activation.

A layer is built from a validated ``LayerSpec``, the shape of its input (one
sample, no batch axis) and its model's bound backend, ``ops``
(``fastcnn.kernels.ops.Ops``): it resolves its geometry once, when built, and
then calls the backend's functions with no checks per call. It owns its
parameter arrays in ``params`` and provides ``forward(x, workspace=None) -> (y, aux)`` and
``backward(g_y, aux, input_grad=True, workspace=None) -> (g_x, grads)``;
backward never updates weights (the optimizer does).

``workspace`` (a ``fastcnn.workspace.Workspace`` or None) is passed per call,
only by ``CnnModel.compute_step``: conv and pooling layers then write their
batch-sized outputs and input gradients into its reused arrays (``buffer``)
instead of new ones. It is an argument, not layer state, so a forward running
at the same time without one (``predict``, another thread) never gets a reused
array. Parameter gradients are always new arrays.
"""

from __future__ import annotations

import numpy as np

from ..hconfig import LayerSpec
from .activations import ACTIVATIONS, INIT_GAIN

#: workspace name of a layer's pre-activation output; with ReLU it is dead once the
#: activation has run, so backward reuses it for ReLU's gradient (one array less to touch)
PRE_ACTIVATION = "pre"

#: the book's fixed weight scale, N(0, 0.030)
SEED_STD = 0.030


def init_std(init, fan_in: int, actfunc: str) -> float:
    """Standard deviation for a weight tensor: 'he' (gain / fan_in), 'seed' or a float."""
    if init == "he":
        return float(np.sqrt(INIT_GAIN[actfunc] / fan_in))
    if init == "seed":
        return SEED_STD
    return float(init)


class Layer:
    """Base class: shapes, parameters and the activation named by the spec."""

    #: True for conv and pooling layers (their outputs are feature maps)
    makes_maps = False

    def __init__(self, spec: LayerSpec, input_shape: tuple, *, ops, dtype, rng, init):
        self.spec = spec
        #: resolved once (the spec never changes): read on every step
        self._key, self._actfunc, self._names = spec.key, spec.actfunc, {}
        self.input_shape = tuple(input_shape)
        self.ops = ops
        self.dtype = np.dtype(dtype)
        self.act, self.act_derv = ACTIVATIONS[spec.actfunc]
        self.params: dict[str, np.ndarray] = {}
        self.output_shape = self.build(rng, init)

    @property
    def backend(self) -> str:
        """The name of the backend this layer's model runs on."""
        return self.ops.name

    @property
    def key(self) -> str:
        """``layer03_conv`` (nested: ``layer03_serial/1_conv``): the prefix of this layer's
        parameter and workspace names (``LayerSpec.key``)."""
        return self._key

    def build(self, rng, init) -> tuple:
        """Allocate parameters; return the output shape of one sample."""
        raise NotImplementedError

    def forward(self, x: np.ndarray, workspace=None):
        raise NotImplementedError

    def backward(self, g_y: np.ndarray, aux, input_grad: bool = True, workspace=None):
        """``(g_x, grads)``; a layer may return ``g_x=None`` when ``input_grad`` is False."""
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------
    def normal(self, rng, init, shape, fan_in: int) -> np.ndarray:
        """Weights drawn in float64 (same on every backend and dtype), then cast."""
        std = init_std(init, fan_in, self.spec.actfunc)
        return rng.normal(0.0, std, shape).astype(self.dtype)

    def zeros(self, shape) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype)

    def buffer(self, workspace, name: str, shape) -> np.ndarray | None:
        """This layer's reusable array ``name`` of ``shape`` from ``workspace``; None without one
        (the kernel then allocates its result as usual)."""
        if workspace is None:
            return None
        full = self._names.get(name)
        if full is None:
            full = self._names[name] = f"{self._key}/{name}"
        return workspace.get(full, shape, self.dtype)

    def grad_buffer(self, workspace, name: str, shape) -> np.ndarray | None:
        """As ``buffer``, for a parameter gradient: only while the workspace lends those too."""
        if workspace is None or not workspace.param_grads:
            return None
        return self.buffer(workspace, name, shape)

    def activate(self, v: np.ndarray, workspace=None) -> np.ndarray:
        """The activation of the fresh pre-activation ``v``: the backend's ReLU writes into a
        workspace array when there is one, else into ``v`` itself (nothing else holds it).

        (Other activations are NumPy expressions that allocate their result.)
        """
        if self._actfunc == "relu":
            out = self.buffer(workspace, "act", v.shape)
            return self.ops.relu_forward(v, out=v if out is None else out)
        return self.act(v)

    def grad_activation(self, g_y: np.ndarray, y: np.ndarray, workspace=None) -> np.ndarray:
        """Gradient w.r.t. the pre-activation value (ReLU's into a workspace array if given)."""
        if self._actfunc == "none":
            return g_y
        if self._actfunc == "relu":
            # the pre-activation's array is free again (only ReLU's output is kept for backward)
            return self.ops.relu_backward(g_y, y, out=self.buffer(workspace, PRE_ACTIVATION, y.shape))
        return (g_y * self.act_derv(y)).astype(self.dtype, copy=False)

    def needs_image(self) -> tuple[int, int, int]:
        """The input as ``(h, w, chn)``, or an error when the input is flat."""
        if len(self.input_shape) != 3:
            raise self.spec.error(
                None,
                f"needs an [h, w, chn] input but gets a flat input of shape {self.input_shape} "
                "(conv and pooling layers must come before full layers)",
            )
        return self.input_shape
