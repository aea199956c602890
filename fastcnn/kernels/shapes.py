"""Output sizes and padding arithmetic, in plain Python.

Every backend receives geometry already normalized by these helpers:
``stride`` and ``ksize`` as ``(h, w)`` int pairs and padding as
``(top, bottom, left, right)``, so the kernels never parse arguments.
"""

from __future__ import annotations

from typing import NamedTuple

from ..checks import is_int

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]


def as_pair(value, name: str) -> Pair:
    """Turn an int or an ``(h, w)`` list/tuple of ints into a pair of positive ints."""
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or an (h, w) pair, got {value!r}")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


def same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """SAME padding along one axis: ``out = ceil(size / s)``, extra at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_hw: Pair, k_hw: Pair, s_hw: Pair) -> Pads:
    """Turn ``'same' | 'valid' | int | (h, w)`` into ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "same":
            top, bottom = same_pads(in_hw[0], k_hw[0], s_hw[0])
            left, right = same_pads(in_hw[1], k_hw[1], s_hw[1])
            return top, bottom, left, right
        if mode == "valid":
            return 0, 0, 0, 0
        raise ValueError(f"padding must be 'same', 'valid', an int or an (h, w) pair, got {padding!r}")
    if is_int(padding):
        ph = pw = int(padding)
    elif isinstance(padding, (list, tuple)) and len(padding) == 2 and all(is_int(p) for p in padding):
        ph, pw = int(padding[0]), int(padding[1])
    else:
        raise TypeError(f"padding must be 'same', 'valid', an int or an (h, w) pair, got {padding!r}")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ph, ph, pw, pw


def out_size(size: int, k: int, s: int, pad_before: int = 0, pad_after: int = 0) -> int:
    """Number of windows of size ``k`` and step ``s`` that fit in the padded axis."""
    return (size + pad_before + pad_after - k) // s + 1


class ConvGeometry(NamedTuple):
    """Everything a backend needs to know about one convolution's shapes."""

    kh: int
    kw: int
    sh: int
    sw: int
    pads: Pads  # (top, bottom, left, right)
    yh: int
    yw: int


def conv_geometry(x_shape, kh: int, kw: int, stride, padding) -> ConvGeometry:
    """Validate and resolve the geometry of a conv on an NHWC input shape."""
    _, xh, xw, _ = x_shape
    sh, sw = as_pair(stride, "stride")
    pads = resolve_padding(padding, (xh, xw), (kh, kw), (sh, sw))
    ph, pw = xh + pads[0] + pads[1], xw + pads[2] + pads[3]
    if kh > ph or kw > pw:
        raise ValueError(
            f"kernel {kh}x{kw} is larger than the padded input {ph}x{pw} "
            f"(input {xh}x{xw}, padding {padding!r})"
        )
    yh = out_size(xh, kh, sh, pads[0], pads[1])
    yw = out_size(xw, kw, sw, pads[2], pads[3])
    return ConvGeometry(kh, kw, sh, sw, pads, yh, yw)


class PoolGeometry(NamedTuple):
    """Window, step and output size of one pooling (no padding in the kernels)."""

    kh: int
    kw: int
    sh: int
    sw: int
    yh: int
    yw: int


def pool_geometry(x_shape, ksize, stride) -> PoolGeometry:
    """Validate pooling arguments; ``stride=None`` means stride = window."""
    _, xh, xw, _ = x_shape
    kh, kw = as_pair(ksize, "ksize")
    sh, sw = (kh, kw) if stride is None else as_pair(stride, "stride")
    if kh > xh or kw > xw:
        raise ValueError(f"pooling window {kh}x{kw} is larger than the input {xh}x{xw}")
    return PoolGeometry(kh, kw, sh, sw, out_size(xh, kh, sh), out_size(xw, kw, sw))
