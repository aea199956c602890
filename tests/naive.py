"""Slow, obvious float64 reference kernels: the oracle for every backend.

Deliberately independent of ``fastcnn.kernels``: padding is resolved here
from the rule stated in the spec, the input is padded explicitly with
``np.pad``, and every output pixel is computed on its own window with
``np.tensordot``. Arguments follow the public API (``stride``/``ksize`` as an
int or ``(h, w)``, ``padding`` as 'same'/'valid'/int/``(h, w)``).
"""

from __future__ import annotations

import numpy as np


def pair(value) -> tuple[int, int]:
    """int or (h, w) -> (h, w)."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def pads_for(x_shape, kh: int, kw: int, stride, padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right); SAME means out = ceil(in / stride), extra at the end."""
    _, xh, xw, _ = x_shape
    sh, sw = pair(stride)
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        out_h, out_w = -(-xh // sh), -(-xw // sw)
        tot_h = max((out_h - 1) * sh + kh - xh, 0)
        tot_w = max((out_w - 1) * sw + kw - xw, 0)
        return tot_h // 2, tot_h - tot_h // 2, tot_w // 2, tot_w - tot_w // 2
    ph, pw = pair(padding)
    return ph, ph, pw, pw


def _padded(x, kh, kw, stride, padding):
    """float64 padded copy of x plus (top, left, yh, yw, sh, sw)."""
    top, bottom, left, right = pads_for(x.shape, kh, kw, stride, padding)
    sh, sw = pair(stride)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    yh = (xp.shape[1] - kh) // sh + 1
    yw = (xp.shape[2] - kw) // sw + 1
    return xp, top, left, yh, yw, sh, sw


def conv2d_forward(x, k, b, stride=1, padding="same"):
    """y[n, r, c, :] = sum over the window of window * k, plus b."""
    kh, kw, _, ychn = k.shape
    xp, _, _, yh, yw, sh, sw = _padded(x, kh, kw, stride, padding)
    k = np.asarray(k, np.float64)
    y = np.zeros((x.shape[0], yh, yw, ychn))
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                win = xp[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :]
                y[n, r, c] = np.tensordot(win, k, axes=3) + b
    return y


def conv2d_backward(g_y, x, k, stride=1, padding="same"):
    """(g_x, g_k, g_b) of conv2d_forward, accumulated window by window."""
    kh, kw, _, _ = k.shape
    xp, top, left, yh, yw, sh, sw = _padded(x, kh, kw, stride, padding)
    k = np.asarray(k, np.float64)
    g_y = np.asarray(g_y, np.float64)
    g_xp = np.zeros_like(xp)
    g_k = np.zeros_like(k)
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                rows = slice(r * sh, r * sh + kh)
                cols = slice(c * sw, c * sw + kw)
                g = g_y[n, r, c]
                g_xp[n, rows, cols, :] += np.tensordot(k, g, axes=([3], [0]))
                g_k += np.multiply.outer(xp[n, rows, cols, :], g)
    g_x = g_xp[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return g_x, g_k, g_y.sum(axis=(0, 1, 2))


def _pool_geo(x_shape, ksize, stride):
    kh, kw = pair(ksize)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    yh = (x_shape[1] - kh) // sh + 1
    yw = (x_shape[2] - kw) // sw + 1
    return kh, kw, sh, sw, yh, yw


def max_pool_forward(x, ksize, stride=None):
    kh, kw, sh, sw, yh, yw = _pool_geo(x.shape, ksize, stride)
    x = np.asarray(x, np.float64)
    y = np.zeros((x.shape[0], yh, yw, x.shape[3]))
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                for ch in range(x.shape[3]):
                    y[n, r, c, ch] = x[n, r * sh : r * sh + kh, c * sw : c * sw + kw, ch].max()
    return y


def max_pool_backward(g_y, x, ksize, stride=None):
    """Each g_y element goes to the first max of its window (row-major)."""
    kh, kw, sh, sw, yh, yw = _pool_geo(x.shape, ksize, stride)
    g_x = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                for ch in range(x.shape[3]):
                    win = x[n, r * sh : r * sh + kh, c * sw : c * sw + kw, ch]
                    i, j = np.unravel_index(np.argmax(win), win.shape)
                    g_x[n, r * sh + i, c * sw + j, ch] += g_y[n, r, c, ch]
    return g_x


def avg_pool_forward(x, ksize, stride=None):
    kh, kw, sh, sw, yh, yw = _pool_geo(x.shape, ksize, stride)
    x = np.asarray(x, np.float64)
    y = np.zeros((x.shape[0], yh, yw, x.shape[3]))
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                y[n, r, c] = x[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :].mean(axis=(0, 1))
    return y


def avg_pool_backward(g_y, x, ksize, stride=None):
    kh, kw, sh, sw, yh, yw = _pool_geo(x.shape, ksize, stride)
    g_x = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                g_x[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :] += g_y[n, r, c] / (kh * kw)
    return g_x


def ext_regions(x, kh, kw, stride=1, padding="same"):
    """Row (n, r, c) = padded window of output pixel (r, c), flattened (kernel row, col, channel)."""
    xp, _, _, yh, yw, sh, sw = _padded(x, kh, kw, stride, padding)
    rows = []
    for n in range(x.shape[0]):
        for r in range(yh):
            for c in range(yw):
                rows.append(xp[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :].reshape(-1))
    return np.array(rows)


def undo_ext_regions(cols, x_shape, kh, kw, stride=1, padding="same"):
    """Adjoint of ext_regions: add each row back onto its window, crop the padding."""
    xp, top, left, yh, yw, sh, sw = _padded(np.zeros(x_shape), kh, kw, stride, padding)
    mb, xh, xw, xchn = x_shape
    row = 0
    for n in range(mb):
        for r in range(yh):
            for c in range(yw):
                xp[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :] += cols[row].reshape(kh, kw, xchn)
                row += 1
    return xp[:, top : top + xh, left : left + xw, :]
