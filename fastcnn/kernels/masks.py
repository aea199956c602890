"""Dropout's and noise's random numbers, drawn and applied in one pass, by backend.

The numbers are counter-based: element ``i`` of a call gets a uniform number made from
``(key, i)`` alone (splitmix64's mix of ``key + (i + 1) * golden``, top 53 bits), and the
layer draws one ``key`` per call from the model's seeded generator. So any thread can make
any element's number: the compiled kernels (``numba_random``) draw and apply them in one
parallel pass, with the same masks on every thread count, and the NumPy functions here
make the same uniform numbers bit for bit. Arithmetic runs in float64 and the result is
cast to the data's dtype::

    dropout_forward(x, key, keep) -> (y, mask)   mask: uint8, 1 where uniform(key, i) < keep;
                                                 y = x / keep there, else 0
    dropout_backward(g, mask, keep) -> g / keep where mask, else 0
    add_noise(x, key, mean, std) -> x + mean + std * z    z ~ N(0, 1): Box-Muller on the
                                                 uniform pairs (2j, 2j+1): cos for 2j, sin for 2j+1

A kernel that writes an output can also apply a call's numbers as it writes it (the fused
conv + pooling kernels, ``fastcnn.steps``): ``Draw`` holds what it needs, the same numbers as
the functions above for element ``i`` of the output. The compiled backends also fuse a ReLU
with the dropout or noise right after it (``FUSED_MASK_FUNCTIONS``, None on the NumPy ones)::

    relu_draw_forward(a, draw, out=None, mask=None) -> (y, mask | None)   y = the draw applied
                                                 to max(a, 0); mask: dropout's (None for noise)
    relu_drop_backward(g, mask, keep, a, out=None) -> relu_backward(dropout_backward(g, mask,
                                                 keep), max(a, 0)), one pass

``bind_masks(backend)`` returns them for a backend (``MASK_BACKENDS``): NumPy here for numpy,
better and adhoc; ``numba_random``'s kernels for ``numba`` and, built ahead of time, for
``numba-aot`` (``aot_random``), both through ``KernelMasks``, so the two give the same bits.
Dropout masks are the same on every backend; noise may differ in the last bit between NumPy
and the compiled kernels (their ``log``/``cos``/``sin``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: a compiled kernel's mask mode (``Draw.mode``): nothing, dropout, noise
NO_MASK, DROPOUT, NOISE = 0, 1, 2

#: the functions every module in MASK_BACKENDS defines
MASK_FUNCTIONS = ("dropout_forward", "dropout_backward", "add_noise")

#: the functions a module in MASK_BACKENDS may define (``MaskOps`` holds None where it does not)
FUSED_MASK_FUNCTIONS = ("relu_draw_forward", "relu_drop_backward")

#: backend name -> the module with its mask functions
MASK_BACKENDS: dict[str, str] = {
    "numba": "fastcnn.kernels.numba_random",
    "numba-aot": "fastcnn.kernels.aot_random",
    "numpy": __name__,
    "better": __name__,
    "adhoc": __name__,
}

#: splitmix64's constants (the compiled kernels use the same)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
#: 2**-53: the top 53 bits of a mixed word as a float64 in [0, 1)
UNIT = 1.0 / 9007199254740992.0
#: keys are drawn in [0, KEY_LIMIT): non-negative int64, so every backend reads the same bits
KEY_LIMIT = 2**63


def uniforms(key: int, n: int) -> np.ndarray:
    """float64 [n]: element i's uniform number in [0, 1) for ``key``."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + np.arange(1, n + 1, dtype=np.uint64) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * UNIT


def normals(key: int, n: int) -> np.ndarray:
    """float64 [n]: standard normal numbers, Box-Muller on the pairs of ``uniforms``."""
    u = uniforms(key, n + (n & 1))
    r = np.sqrt(-2.0 * np.log(1.0 - u[0::2]))
    t = 2.0 * np.pi * u[1::2]
    z = np.empty(u.shape[0])
    z[0::2] = r * np.cos(t)
    z[1::2] = r * np.sin(t)
    return z[:n]


def dropout_forward(x: np.ndarray, key: int, keep: float):
    mask = (uniforms(key, x.size) < keep).reshape(x.shape)
    y = np.where(mask, x.astype(np.float64) * (1.0 / keep), 0.0).astype(x.dtype)
    return y, mask.astype(np.uint8)


def dropout_backward(g: np.ndarray, mask: np.ndarray, keep: float) -> np.ndarray:
    return np.where(mask != 0, g.astype(np.float64) * (1.0 / keep), 0.0).astype(g.dtype)


def add_noise(x: np.ndarray, key: int, mean: float, std: float) -> np.ndarray:
    noise = mean + std * normals(key, x.size).reshape(x.shape)
    return (x.astype(np.float64) + noise).astype(x.dtype)


def _array(arr, shape, dtype, name: str) -> np.ndarray:
    """A new array, or ``arr`` once checked: C-contiguous, writeable, of ``shape`` and ``dtype``."""
    if arr is None:
        return np.empty(shape, dtype)
    if not (isinstance(arr, np.ndarray) and arr.shape == tuple(shape) and arr.dtype == dtype
            and arr.flags.c_contiguous and arr.flags.writeable):
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{name} must be a C-contiguous writeable {np.dtype(dtype)} array of shape "
                         f"{tuple(shape)}, got {got}")
    return arr


def _apart(out, *inputs) -> None:
    """``out`` is none of ``inputs``: the fused kernels read them after writing it, and LLVM runs
    a loop whose arrays overlap scalar (numba_random._drop_in_place)."""
    if any(np.shares_memory(out, arr) for arr in inputs):
        raise ValueError("out must not overlap the inputs of a fused ReLU + dropout / noise")


class KernelMasks:
    """The functions around ``numba_random``'s kernels (JIT or ahead-of-time builds): flat
    C-contiguous arrays in, results of the input's shape out. Imports no numba.

    ``relu_draw_fwd`` / ``relu_drop_bwd``: the fused ReLU kernels, for ``FUSED_MASK_FUNCTIONS``."""

    def __init__(self, dropout_fwd: Callable, dropout_bwd: Callable, noise: Callable,
                 relu_draw_fwd: Callable, relu_drop_bwd: Callable):
        self._fwd, self._bwd, self._noise = dropout_fwd, dropout_bwd, noise
        self._relu_fwd, self._relu_bwd = relu_draw_fwd, relu_drop_bwd

    def dropout_forward(self, x, key, keep):
        x = np.ascontiguousarray(x)
        y = np.empty_like(x)
        mask = np.empty(x.shape, np.uint8)
        self._fwd(x.reshape(-1), int(key), 1.0 / float(keep), float(keep), y.reshape(-1), mask.reshape(-1))
        return y, mask

    def dropout_backward(self, g, mask, keep):
        g = np.ascontiguousarray(g)
        out = np.empty_like(g)
        self._bwd(g.reshape(-1), np.ascontiguousarray(mask).reshape(-1), 1.0 / float(keep), out.reshape(-1))
        return out

    def add_noise(self, x, key, mean, std):
        x = np.ascontiguousarray(x)
        y = np.empty_like(x)
        self._noise(x.reshape(-1), int(key), float(mean), float(std), y.reshape(-1))
        return y

    def relu_draw_forward(self, a, draw: Draw, out=None, mask=None):
        """``(y, mask)``: ``draw`` (dropout or noise) applied to max(a, 0), one pass; the bits of
        relu_forward, then dropout_forward / add_noise. ``out`` (y) and ``mask`` (dropout's uint8
        mask; None for noise): new arrays, or given ones of a's shape, apart from a."""
        a = np.ascontiguousarray(a)
        if draw.mode not in (DROPOUT, NOISE):
            raise ValueError(f"relu_draw_forward needs a dropout or noise draw, got mode {draw.mode}")
        y = _array(out, a.shape, a.dtype, "out")
        _apart(y, a)
        drop = draw.mode == DROPOUT
        mask = _array(mask if drop else None, a.shape, np.uint8, "mask")  # noise: untouched, cut like y
        self._relu_fwd(a.reshape(-1), draw.mode, draw.key, 0, draw.p1, draw.p2, y.reshape(-1),
                       mask.reshape(-1))
        return y, (mask if drop else None)

    def relu_drop_backward(self, g, mask, keep, a, out=None):
        """``g * mask / keep`` where a > 0, else 0, one pass: dropout_backward, then relu_backward
        on the ReLU output max(a, 0), the same bits. ``out``: a new array, or a given one like a."""
        a = np.ascontiguousarray(a)
        g = np.ascontiguousarray(g, a.dtype)
        mask = _array(np.ascontiguousarray(mask), a.shape, np.uint8, "mask")
        out = _array(out, a.shape, a.dtype, "out")
        _apart(out, g, a)
        self._relu_bwd(g.reshape(-1), mask.reshape(-1), 1.0 / float(keep), a.reshape(-1), out.reshape(-1))
        return out


@dataclass(frozen=True)
class Draw:
    """One call's random numbers for a kernel that applies them as it writes its output (element
    ``i`` of the output gets the numbers of element ``i`` of ``dropout_forward`` / ``add_noise``):
    ``mode`` (``DROPOUT`` or ``NOISE``), ``key``, and ``(keep, 1 / keep)`` or ``(mean, std)``."""

    mode: int
    key: int
    p1: float
    p2: float

    @classmethod
    def dropout(cls, key: int, keep: float) -> Draw:
        return cls(DROPOUT, int(key), float(keep), 1.0 / float(keep))

    @classmethod
    def noise(cls, key: int, mean: float, std: float) -> Draw:
        return cls(NOISE, int(key), float(mean), float(std))


#: the kernel arguments of "no numbers" (mode, key, p1, p2)
NO_DRAW = Draw(NO_MASK, 0, 0.0, 0.0)


@dataclass(frozen=True)
class MaskOps:
    """One backend's mask functions (``bind_masks``); the fused ones None where it has none."""

    dropout_forward: Callable
    dropout_backward: Callable
    add_noise: Callable
    relu_draw_forward: Callable | None = None
    relu_drop_backward: Callable | None = None


def bind_masks(backend: str) -> MaskOps:
    """The mask functions of backend ``backend`` (ValueError naming the valid ones)."""
    if backend not in MASK_BACKENDS:
        valid = ", ".join(MASK_BACKENDS)
        raise ValueError(f"no dropout/noise functions for backend {backend!r}; valid: {valid}")
    module = importlib.import_module(MASK_BACKENDS[backend])
    fused = {name: getattr(module, name, None) for name in FUSED_MASK_FUNCTIONS}
    return MaskOps(**{name: getattr(module, name) for name in MASK_FUNCTIONS}, **fused)
