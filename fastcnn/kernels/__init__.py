"""The kernel contract: eight stateless NHWC functions, five backends.

Each public function validates its arguments (rank, channels, dtype, geometry)
and raises ``ValueError``/``TypeError`` naming the argument at fault, then
hands contiguous arrays and normalized geometry to one backend module.
Backend modules (``adhoc``, ``better``, ``im2col``, ``numba_cpu``, ``numba_aot``) all define
the same internal functions (the numba ones as methods of the ``NumbaHost`` they name
``BACKEND``); see ``BACKEND_FUNCTIONS`` for their signatures. Each declares its own
capabilities (``CAPABILITIES``). A model binds its backend once (``ops.Ops``) and
calls those functions without the checks made here.

The six conv and pooling functions take ``out=``: an array the result is
written into (and which is returned), checked here before any backend code
runs. Backends marked in ``WRITES_INTO_OUT`` write into it themselves; for the
others the result is computed as usual and copied into ``out``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

import numpy as np

from ..checks import is_int as _is_int
from .shapes import ConvGeometry, PoolGeometry, conv_geometry, pool_geometry

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "FUSES_CONV_POOL",
    "SINGLE_THREADED_BLAS",
    "WRITES_INTO_OUT",
    "avg_pool_backward",
    "avg_pool_forward",
    "backend_available",
    "conv2d_backward",
    "conv2d_forward",
    "ext_regions",
    "get_backend",
    "max_pool_backward",
    "max_pool_forward",
    "undo_ext_regions",
]

#: backend name -> module that implements it (imported on first use, so that
#: ``import fastcnn`` does not pay for numba unless the numba backend runs).
BACKENDS: dict[str, str] = {
    "numba": "fastcnn.kernels.numba_cpu",
    "numba-aot": "fastcnn.kernels.numba_aot",
    "numpy": "fastcnn.kernels.im2col",
    "better": "fastcnn.kernels.better",
    "adhoc": "fastcnn.kernels.adhoc",
}
DEFAULT_BACKEND = "numba"

class _Capability(Mapping):
    """backend name -> one capability the backend declares itself (an attribute of its
    module or object, read when asked: asking loads that backend)."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def __getitem__(self, name: str) -> bool:
        return bool(getattr(get_backend(name), self.attribute))

    def __iter__(self):
        return iter(BACKENDS)

    def __len__(self) -> int:
        return len(BACKENDS)


#: backend name -> True if its six conv/pool functions take ``out=None`` and
#: write the result into ``out`` themselves (no extra array, no copy); False:
#: the dispatcher copies the backend's fresh result into ``out``. Only the
#: backends marked True gain from reusing output buffers (``fastcnn.workspace``).
WRITES_INTO_OUT = _Capability("WRITES_INTO_OUT")
#: backend name -> True if models on it run BLAS single-threaded: the numba kernels
#: own the cores, and the dense layers' products then give the same bits whatever
#: BLAS's thread count (``matmul`` splits them in fixed pieces).
SINGLE_THREADED_BLAS = _Capability("SINGLE_THREADED_BLAS")
#: backend name -> True if it runs a stride-1 conv, its activation and the pooling right
#: after it as one pass (``FUSED_FUNCTIONS``): models then run such a pair as one step
#: (``fastcnn.steps``), with the same bits as layer by layer.
FUSES_CONV_POOL = _Capability("FUSES_CONV_POOL")

#: The internal functions every backend module defines. Arrays arrive
#: C-contiguous with one float dtype; geometry arrives resolved.
#:   conv2d_forward(x, k, b, geo: ConvGeometry) -> y [mb, yh, yw, ychn]
#:   conv2d_backward(g_y, x, k, geo: ConvGeometry, input_grad=True) -> (g_x or None, g_k, g_b)
#:   max_pool_forward(x, geo: PoolGeometry) -> y
#:   max_pool_backward(g_y, x, geo: PoolGeometry) -> g_x   (ties: first max)
#:   avg_pool_forward(x, geo: PoolGeometry) -> y
#:   avg_pool_backward(g_y, x, geo: PoolGeometry) -> g_x
#:   ext_regions(x, geo: ConvGeometry) -> cols [mb*yh*yw, kh*kw*xchn]
#:   undo_ext_regions(cols, x_shape, geo: ConvGeometry) -> g_x [mb, xh, xw, xchn]
#: Backends marked in WRITES_INTO_OUT also take ``out=None`` (keyword) in the
#: first six: y, or g_x for the backwards (conv2d_backward: only with
#: input_grad), arrives checked (shape, dtype, C-contiguous, writeable, no
#: overlap with the inputs); they write into it and return it.
#: And the steps the layers and Adam call around them (NumPy in
#: ``elementwise.py``, fused and parallel in the numba backend):
#:   relu_forward(x, out=None) -> max(x, 0) into out; without out a new array
#:       (numba) or x itself (NumPy: the caller gives up its fresh pre-activation)
#:   relu_backward(g_y, y, out=None) -> g_y * (y > 0), into out if given
#:   adam_update(p, g, m, v, lr_t, b1, b2, eps)   (in place on p, m, v)
#:   matmul(a, b, out=None) -> a @ b   (2-D, for the dense layers; transposed views allowed)
BACKEND_FUNCTIONS = (
    "conv2d_forward",
    "conv2d_backward",
    "max_pool_forward",
    "max_pool_backward",
    "avg_pool_forward",
    "avg_pool_backward",
    "ext_regions",
    "undo_ext_regions",
    "relu_forward",
    "relu_backward",
    "adam_update",
    "matmul",
)

#: what every backend declares about itself (bools; see WRITES_INTO_OUT, SINGLE_THREADED_BLAS,
#: FUSES_CONV_POOL)
CAPABILITIES = ("WRITES_INTO_OUT", "SINGLE_THREADED_BLAS", "FUSES_CONV_POOL")

#: what a backend with FUSES_CONV_POOL defines besides BACKEND_FUNCTIONS (the numba ones:
#: ``NumbaHost``, which documents them; called by ``fastcnn.steps`` through ``ops.Ops``)
FUSED_FUNCTIONS = ("conv_pool_fusable", "conv_pool_code_shape", "conv_pool_forward", "conv_pool_backward")

_loaded: dict[str, ModuleType] = {}


def backend_available(name: str) -> bool:
    """True if backend ``name`` loads here (``numba-aot`` must be built first, see its module)."""
    try:
        get_backend(name)
    except ImportError:
        return False
    return True


def get_backend(name: str) -> ModuleType:
    """Return the backend for ``name``, checking it implements the contract: its module,
    or the object the module names ``BACKEND`` (the numba backends' ``NumbaHost``).

    ImportError if it cannot load here (e.g. ``numba-aot`` not built), saying why.
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    if name in _loaded:
        return _loaded[name]
    module = importlib.import_module(BACKENDS[name])
    backend = getattr(module, "BACKEND", module)
    missing = [f for f in BACKEND_FUNCTIONS if not callable(getattr(backend, f, None))]
    missing += [c for c in CAPABILITIES if not isinstance(getattr(backend, c, None), bool)]
    if getattr(backend, "FUSES_CONV_POOL", False) is True:
        missing += [f for f in FUSED_FUNCTIONS if not callable(getattr(backend, f, None))]
    if missing:
        raise ImportError(f"backend {name!r} ({module.__name__}) lacks {', '.join(missing)}")
    _loaded[name] = backend
    return backend


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

_FLOATS = (np.float32, np.float64)


def _array(value, name: str, ndim: int, dtype=None) -> np.ndarray:
    """Check rank and float dtype; return a C-contiguous array (copy if needed)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {value.shape}")
    if value.dtype.type not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but x has {dtype}; pass one dtype")
    if 0 in value.shape:
        raise ValueError(f"{name} must not be empty, got shape {value.shape}")
    return np.ascontiguousarray(value)


def _x(x) -> np.ndarray:
    return _array(x, "x [mb, h, w, chn]", 4)


def _kernel(k, x: np.ndarray) -> np.ndarray:
    k = _array(k, "k [kh, kw, xchn, ychn]", 4, x.dtype)
    if k.shape[2] != x.shape[3]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[3]} channels (shape {x.shape}) "
            f"but k expects {k.shape[2]} (shape {k.shape})"
        )
    return k


def _grad(g_y, x: np.ndarray, expected: tuple) -> np.ndarray:
    g_y = _array(g_y, "g_y", 4, x.dtype)
    if g_y.shape != expected:
        raise ValueError(f"g_y has shape {g_y.shape}, but the forward output has shape {expected}")
    return g_y


def _x_shape(x_shape) -> tuple[int, int, int, int]:
    if not isinstance(x_shape, (tuple, list)) or not all(_is_int(v) for v in x_shape):
        raise TypeError(f"x_shape must be a sequence of 4 ints, got {x_shape!r}")
    shape = tuple(int(v) for v in x_shape)
    if len(shape) != 4 or min(shape) <= 0:
        raise ValueError(f"x_shape must be 4 positive ints [mb, h, w, chn], got {x_shape!r}")
    return shape


def _out(out, expected: tuple, dtype, inputs: dict):
    """Check an ``out=`` array: None, or exactly what the result will be, overlapping no input.

    ``inputs`` maps argument names to the arrays as the caller passed them.
    """
    if out is None:
        return None
    want = f"shape {expected} and dtype {np.dtype(dtype)}"
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array of {want}, got {type(out).__name__}")
    if out.shape != expected:
        raise ValueError(f"out has shape {out.shape}, expected {want}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {want} (the dtype of x)")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous ({want})")
    if not out.flags.writeable:
        raise ValueError(f"out must be writeable ({want})")
    for name, array in inputs.items():
        if np.may_share_memory(out, array):
            raise ValueError(f"out must not overlap the input {name} ({want})")
    return out


def _into(out, result: np.ndarray) -> np.ndarray:
    """``result`` itself, or copied into ``out`` (for backends that do not write into it)."""
    if out is None or result is out:
        return result
    np.copyto(out, result)
    return out


def _call(backend: str, fn, *args, out=None):
    """Run a backend function with ``out`` handled as ``WRITES_INTO_OUT`` says."""
    if out is not None and get_backend(backend).WRITES_INTO_OUT:
        return fn(*args, out=out)
    return _into(out, fn(*args))


def _conv_geo(x_shape, kh, kw, stride, padding) -> ConvGeometry:
    return conv_geometry(x_shape, kh, kw, stride, padding)


def _pool_geo(x: np.ndarray, ksize, stride) -> PoolGeometry:
    return pool_geometry(x.shape, ksize, stride)


# --------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------


def conv2d_forward(x, k, b, stride=1, padding="same", *, backend: str = DEFAULT_BACKEND, out=None):
    """Convolve NHWC ``x`` with ``k [kh, kw, xchn, ychn]`` and add bias ``b [ychn]``.

    Returns ``y [mb, yh, yw, ychn]`` in the dtype of ``x``; with ``out`` (a
    C-contiguous, writeable array of that shape and dtype that overlaps no
    input) the result is written into ``out``, which is returned.
    """
    impl = get_backend(backend)
    x0, k0, b0 = x, k, b
    x = _x(x)
    k = _kernel(k, x)
    b = _array(b, "b [ychn]", 1, x.dtype)
    if b.shape[0] != k.shape[3]:
        raise ValueError(f"b has length {b.shape[0]} but k has {k.shape[3]} output channels")
    geo = _conv_geo(x.shape, k.shape[0], k.shape[1], stride, padding)
    out = _out(out, (x.shape[0], geo.yh, geo.yw, k.shape[3]), x.dtype, {"x": x0, "k": k0, "b": b0})
    return _call(backend, impl.conv2d_forward, x, k, b, geo, out=out)


def conv2d_backward(g_y, x, k, stride=1, padding="same", *, input_grad: bool = True,
                    backend: str = DEFAULT_BACKEND, out=None):
    """Gradients of ``conv2d_forward``: returns ``(g_x, g_k, g_b)``.

    ``input_grad=False`` skips ``g_x`` (returned as None): a model's first layer
    never needs the gradient of its input, and on one-channel inputs it is a
    third of the backward's work. ``out`` receives ``g_x`` (shape and dtype of
    ``x``, see ``conv2d_forward``) and is returned as it; with
    ``input_grad=False`` there is no ``g_x``, and passing ``out`` is an error.
    ``g_k`` and ``g_b`` are always new arrays.
    """
    impl = get_backend(backend)
    x0, k0, g_y0 = x, k, g_y
    x = _x(x)
    k = _kernel(k, x)
    geo = _conv_geo(x.shape, k.shape[0], k.shape[1], stride, padding)
    g_y = _grad(g_y, x, (x.shape[0], geo.yh, geo.yw, k.shape[3]))
    input_grad = bool(input_grad)
    if out is not None and not input_grad:
        raise ValueError("out receives g_x, which input_grad=False skips: pass out=None")
    out = _out(out, x.shape, x.dtype, {"g_y": g_y0, "x": x0, "k": k0})
    if out is not None and impl.WRITES_INTO_OUT:
        return impl.conv2d_backward(g_y, x, k, geo, input_grad, out=out)
    g_x, g_k, g_b = impl.conv2d_backward(g_y, x, k, geo, input_grad)
    return (_into(out, g_x) if input_grad else None), g_k, g_b


def max_pool_forward(x, ksize, stride=None, *, backend: str = DEFAULT_BACKEND, out=None):
    """Max over ``ksize`` windows moved by ``stride`` (default: the window).

    Ties go to the first maximum in row-major window order. With NaN in a
    window the result differs by backend (NumPy's max propagates it, the loop
    backends compare with ``>``); training stops on non-finite values first.
    ``out``: see ``conv2d_forward``.
    """
    return _pool_forward(get_backend(backend).max_pool_forward, x, ksize, stride, backend, out)


def max_pool_backward(g_y, x, ksize, stride=None, *, backend: str = DEFAULT_BACKEND, out=None):
    """Route ``g_y`` to the first maximum of each window; returns ``g_x`` (into ``out`` if given)."""
    return _pool_backward(get_backend(backend).max_pool_backward, g_y, x, ksize, stride, backend, out)


def avg_pool_forward(x, ksize, stride=None, *, backend: str = DEFAULT_BACKEND, out=None):
    """Mean over ``ksize`` windows moved by ``stride`` (default: the window); ``out`` as above."""
    return _pool_forward(get_backend(backend).avg_pool_forward, x, ksize, stride, backend, out)


def avg_pool_backward(g_y, x, ksize, stride=None, *, backend: str = DEFAULT_BACKEND, out=None):
    """Spread ``g_y`` evenly over each window; returns ``g_x`` (into ``out`` if given)."""
    return _pool_backward(get_backend(backend).avg_pool_backward, g_y, x, ksize, stride, backend, out)


def _pool_forward(fn, x, ksize, stride, backend: str, out):
    """Check the arguments of a pooling forward, then run the backend's ``fn``."""
    x0 = x
    x = _x(x)
    geo = _pool_geo(x, ksize, stride)
    out = _out(out, (x.shape[0], geo.yh, geo.yw, x.shape[3]), x.dtype, {"x": x0})
    return _call(backend, fn, x, geo, out=out)


def _pool_backward(fn, g_y, x, ksize, stride, backend: str, out):
    """Check the arguments of a pooling backward, then run the backend's ``fn``."""
    x0, g_y0 = x, g_y
    x = _x(x)
    geo = _pool_geo(x, ksize, stride)
    g_y = _grad(g_y, x, (x.shape[0], geo.yh, geo.yw, x.shape[3]))
    out = _out(out, x.shape, x.dtype, {"g_y": g_y0, "x": x0})
    return _call(backend, fn, g_y, x, geo, out=out)


def ext_regions(x, kh, kw, stride=1, padding="same", *, backend: str = DEFAULT_BACKEND):
    """im2col: every ``kh x kw`` window of padded ``x`` as one row.

    Returns ``cols [mb*yh*yw, kh*kw*xchn]``; a row's columns run over
    (kernel row, kernel column, channel), matching ``k.reshape(-1, ychn)``.
    """
    impl = get_backend(backend)
    x = _x(x)
    geo = _conv_geo(x.shape, _positive(kh, "kh"), _positive(kw, "kw"), stride, padding)
    return impl.ext_regions(x, geo)


def undo_ext_regions(cols, x_shape, kh, kw, stride=1, padding="same", *, backend: str = DEFAULT_BACKEND):
    """col2im: add every row of ``cols`` back onto its window; the adjoint of ``ext_regions``."""
    impl = get_backend(backend)
    shape = _x_shape(x_shape)
    geo = _conv_geo(shape, _positive(kh, "kh"), _positive(kw, "kw"), stride, padding)
    cols = _array(cols, "cols", 2)
    expected = (shape[0] * geo.yh * geo.yw, geo.kh * geo.kw * shape[3])
    if cols.shape != expected:
        raise ValueError(f"cols has shape {cols.shape}, expected {expected} for x_shape {shape}")
    return impl.undo_ext_regions(cols, shape, geo)


def _positive(value, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)
