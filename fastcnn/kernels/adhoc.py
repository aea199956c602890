"""The seed's "adhoc" backend: every kernel as plain nested Python loops.

This is the seven-loop convolution of the seed, generalised to stride and
to arbitrary ``(top, bottom, left, right)`` padding, plus its backward pass
and the pooling / im2col kernels written the same way. It is the most
obvious statement of what each kernel computes and is very slow: use it on
tiny arrays only (tests, teaching).

Index convention shared by every kernel here: output pixel ``(r, c)`` with
kernel offset ``(i, j)`` reads input row ``r * sh + i - top`` and column
``c * sw + j - left``; coordinates outside the input count as zero.
"""

from __future__ import annotations

import numpy as np

from .elementwise import adam_update, matmul, relu_backward, relu_forward  # noqa: F401  (shared NumPy steps)
from .shapes import ConvGeometry, PoolGeometry

#: capabilities (``fastcnn.kernels.ops``): returns new arrays; BLAS keeps its own threads;
#: no fused conv + pooling kernels (models run layer by layer)
WRITES_INTO_OUT = False
SINGLE_THREADED_BLAS = False
FUSES_CONV_POOL = False


def conv2d_forward(x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Convolution by seven nested loops.

    x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn].
    """
    mb_size, xh, xw, xchn = x.shape
    kh, kw, _, ychn = k.shape
    top, _, left, _ = geo.pads

    conv = np.zeros((mb_size, geo.yh, geo.yw, ychn), dtype=x.dtype)

    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ym in range(ychn):
                    for i in range(kh):
                        for j in range(kw):
                            rx = r * geo.sh + i - top
                            cx = c * geo.sw + j - left
                            if rx < 0 or rx >= xh:
                                continue
                            if cx < 0 or cx >= xw:
                                continue
                            for xm in range(xchn):
                                conv[n, r, c, ym] += k[i, j, xm, ym] * x[n, rx, cx, xm]

    return conv + b


def conv2d_backward(
    g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward` by the same seven loops.

    Every product ``k[i, j, xm, ym] * x[n, rx, cx, xm]`` of the forward pass
    sends ``g_y[n, r, c, ym]`` back to both of its factors.
    Returns g_x [mb, xh, xw, xchn], g_k [kh, kw, xchn, ychn], g_b [ychn].
    """
    mb_size, xh, xw, xchn = x.shape
    kh, kw, _, ychn = k.shape
    top, _, left, _ = geo.pads

    g_x = np.zeros(x.shape, dtype=x.dtype)
    g_k = np.zeros(k.shape, dtype=x.dtype)
    g_b = np.zeros(ychn, dtype=x.dtype)

    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ym in range(ychn):
                    g = g_y[n, r, c, ym]
                    g_b[ym] += g
                    for i in range(kh):
                        for j in range(kw):
                            rx = r * geo.sh + i - top
                            cx = c * geo.sw + j - left
                            if rx < 0 or rx >= xh:
                                continue
                            if cx < 0 or cx >= xw:
                                continue
                            for xm in range(xchn):
                                g_k[i, j, xm, ym] += x[n, rx, cx, xm] * g
                                g_x[n, rx, cx, xm] += k[i, j, xm, ym] * g

    return (g_x if input_grad else None), g_k, g_b


def _first_max(x: np.ndarray, n: int, r0: int, c0: int, ch: int, geo: PoolGeometry) -> tuple[int, int]:
    """Offset ``(i, j)`` of the first maximum of one window, row-major order."""
    best_i, best_j = 0, 0
    best = x[n, r0, c0, ch]
    for i in range(geo.kh):
        for j in range(geo.kw):
            # strict '>' keeps the first of equal maxima
            if x[n, r0 + i, c0 + j, ch] > best:
                best = x[n, r0 + i, c0 + j, ch]
                best_i, best_j = i, j
    return best_i, best_j


def max_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Max of each window: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    y = np.zeros((mb_size, geo.yh, geo.yw, chn), dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ch in range(chn):
                    i, j = _first_max(x, n, r * geo.sh, c * geo.sw, ch, geo)
                    y[n, r, c, ch] = x[n, r * geo.sh + i, c * geo.sw + j, ch]
    return y


def max_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Send each ``g_y`` element to its window's first maximum; returns g_x like x."""
    mb_size, _, _, chn = x.shape
    g_x = np.zeros(x.shape, dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ch in range(chn):
                    i, j = _first_max(x, n, r * geo.sh, c * geo.sw, ch, geo)
                    # overlapping windows may pick the same pixel: accumulate
                    g_x[n, r * geo.sh + i, c * geo.sw + j, ch] += g_y[n, r, c, ch]
    return g_x


def avg_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Mean of each window: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    y = np.zeros((mb_size, geo.yh, geo.yw, chn), dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ch in range(chn):
                    for i in range(geo.kh):
                        for j in range(geo.kw):
                            y[n, r, c, ch] += x[n, r * geo.sh + i, c * geo.sw + j, ch]
    return y / (geo.kh * geo.kw)


def avg_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Spread each ``g_y`` element evenly over its window; returns g_x like x."""
    mb_size, _, _, chn = x.shape
    g_x = np.zeros(x.shape, dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                for ch in range(chn):
                    share = g_y[n, r, c, ch] / (geo.kh * geo.kw)
                    for i in range(geo.kh):
                        for j in range(geo.kw):
                            g_x[n, r * geo.sh + i, c * geo.sw + j, ch] += share
    return g_x


def ext_regions(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """im2col element by element: x [mb, xh, xw, xchn] -> cols [mb*yh*yw, kh*kw*xchn]."""
    mb_size, xh, xw, xchn = x.shape
    top, _, left, _ = geo.pads
    cols = np.zeros((mb_size * geo.yh * geo.yw, geo.kh * geo.kw * xchn), dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                row = (n * geo.yh + r) * geo.yw + c
                for i in range(geo.kh):
                    for j in range(geo.kw):
                        rx = r * geo.sh + i - top
                        cx = c * geo.sw + j - left
                        if rx < 0 or rx >= xh or cx < 0 or cx >= xw:
                            continue  # padding: the zero is already there
                        for xm in range(xchn):
                            cols[row, (i * geo.kw + j) * xchn + xm] = x[n, rx, cx, xm]
    return cols


def undo_ext_regions(cols: np.ndarray, x_shape: tuple, geo: ConvGeometry) -> np.ndarray:
    """col2im element by element: add each cols entry back onto its input pixel.

    cols [mb*yh*yw, kh*kw*xchn] -> g_x [mb, xh, xw, xchn]; entries that came
    from padding are dropped.
    """
    mb_size, xh, xw, xchn = x_shape
    top, _, left, _ = geo.pads
    g_x = np.zeros(x_shape, dtype=cols.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                row = (n * geo.yh + r) * geo.yw + c
                for i in range(geo.kh):
                    for j in range(geo.kw):
                        rx = r * geo.sh + i - top
                        cx = c * geo.sw + j - left
                        if rx < 0 or rx >= xh or cx < 0 or cx >= xw:
                            continue
                        for xm in range(xchn):
                            g_x[n, rx, cx, xm] += cols[row, (i * geo.kw + j) * xchn + xm]
    return g_x
