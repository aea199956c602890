"""A backend bound once: what a model's layers and optimizer call, with no checks per call.

``fastcnn.kernels``' public functions validate every call (ranks, channels,
dtypes, geometry, ``out``) and then hand over to a backend. A model does not
need that on every step: each layer resolves its geometry once, when the model
is built, and its arrays are contiguous and of one dtype by construction. So
the model binds its backend once, ``Ops.bind(name)``, and its layers and
optimizer call the backend's functions straight through this object, with the
resolved geometry. Every function means the same on every backend: results
are new arrays unless ``out`` is given, and then ``out`` is filled and
returned (backends that cannot write into it get their result copied there).

The functions, all on C-contiguous arrays of one float dtype::

    conv2d_forward(x, k, b, geo, out=None) -> y
    conv2d_backward(g_y, x, k, geo, input_grad, out=None) -> (g_x | None, g_k, g_b)   out: g_x
    max_pool_forward(x, geo, out=None) / avg_pool_forward(x, geo, out=None) -> y
    max_pool_backward(g_y, x, geo, out=None) / avg_pool_backward(g_y, x, geo, out=None) -> g_x
    relu_forward(x, out=None) -> max(x, 0)      (out may be x itself)
    relu_backward(g_y, y, out=None) -> g_y * (y > 0)
    matmul(a, b, out=None) -> a @ b             (2-D; transposed views allowed)
    adam_update(p, g, m, v, lr_t, beta1, beta2, eps)   in place on p, m, v

And, where the backend has them (``fuses_conv_pool``; None elsewhere), a stride-1
conv, its activation and the pooling right after it as one pass (``fastcnn.steps``;
the meaning and arguments are ``NumbaHost``'s, the bits those of the three layers)::

    conv_pool_fusable(geo, act, pool, pool_geo, xchn=1) -> bool
    conv_pool_code_shape(mb, ychn, geo, act, pool, pool_geo) -> shape of the uint8 code
    conv_pool_forward(x, k, b, geo, act, pool, pool_geo, out=None, code=None, draw=None, mask=None)
        -> (y, code)        draw: a dropout's or noise's masks.Draw applied to y (mask: dropout's)
    conv_pool_backward(g_y, code, x, k, geo, act, pool, pool_geo, input_grad, out=None, mask=None,
                       keep=1.0) -> (g_x | None, g_k, g_b)      mask: dropout's backward first
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: the contract functions that take ``out=`` for their (first) array result
_WITH_OUT = ("conv2d_forward", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
             "avg_pool_backward")


def _copying_into_out(fn: Callable) -> Callable:
    """``fn`` with an ``out=`` argument, for a backend that only returns new arrays."""

    def call(*args, out=None):
        result = fn(*args)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    call.__name__ = call.__qualname__ = getattr(fn, "__name__", "call")
    return call


def _backward_copying_into_out(fn: Callable) -> Callable:
    def conv2d_backward(g_y, x, k, geo, input_grad, out=None):
        g_x, g_k, g_b = fn(g_y, x, k, geo, input_grad)
        if out is not None and g_x is not None:
            np.copyto(out, g_x)
            g_x = out
        return g_x, g_k, g_b

    return conv2d_backward


@dataclass(frozen=True)
class Ops:
    """One backend's functions and capabilities, resolved once (see the module docstring)."""

    name: str
    #: the backend writes results into ``out`` itself, so reusing output arrays saves work
    writes_into_out: bool
    #: models on this backend run BLAS single-threaded (its kernels own the cores)
    single_threaded_blas: bool
    conv2d_forward: Callable
    conv2d_backward: Callable
    max_pool_forward: Callable
    max_pool_backward: Callable
    avg_pool_forward: Callable
    avg_pool_backward: Callable
    relu_forward: Callable
    relu_backward: Callable
    matmul: Callable
    adam_update: Callable
    #: the backend runs a conv and the pooling after it as one pass (the ``conv_pool_*`` below)
    fuses_conv_pool: bool = False
    conv_pool_fusable: Callable | None = None
    conv_pool_code_shape: Callable | None = None
    conv_pool_forward: Callable | None = None
    conv_pool_backward: Callable | None = None

    @classmethod
    def bind(cls, name: str) -> Ops:
        """The ops of backend ``name`` (``ValueError`` for an unknown name, ``ImportError``
        when it cannot load here, e.g. ``numba-aot`` not built)."""
        from . import FUSED_FUNCTIONS, get_backend

        backend = get_backend(name)
        writes = bool(backend.WRITES_INTO_OUT)
        functions = {}
        for field in ("conv2d_forward", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
                      "avg_pool_backward", "relu_forward", "relu_backward", "matmul", "adam_update"):
            fn = getattr(backend, field)
            functions[field] = fn if writes or field not in _WITH_OUT else _copying_into_out(fn)
        conv_backward = backend.conv2d_backward
        functions["conv2d_backward"] = conv_backward if writes else _backward_copying_into_out(conv_backward)
        fuses = bool(backend.FUSES_CONV_POOL)
        if fuses:  # writes into out itself (only the numba backends fuse)
            functions.update({field: getattr(backend, field) for field in FUSED_FUNCTIONS})
        return cls(name=name, writes_into_out=writes, single_threaded_blas=bool(backend.SINGLE_THREADED_BLAS),
                   fuses_conv_pool=fuses, **functions)
