"""The seed's "better" backend: a padded buffer and one dot product per output value.

Instead of testing every input coordinate against the image border, the
input is copied once into a zero-filled buffer ``x_ext`` that already holds
the padding; each output pixel then reads one ``kh x kw x xchn`` slice of it,
flattened, and takes its dot product with the flattened kernel of each
output channel. The backward pass and the pooling kernels loop over output
pixels the same way. Faster than ``adhoc`` but still a Python loop per
output pixel: for small arrays only.
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


def _extend(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Zero-padded copy of x: [mb, top + xh + bottom, left + xw + right, xchn]."""
    mb_size, xh, xw, xchn = x.shape
    top, bottom, left, right = geo.pads
    x_ext = np.zeros((mb_size, top + xh + bottom, left + xw + right, xchn), dtype=x.dtype)
    x_ext[:, top : top + xh, left : left + xw, :] = x
    return x_ext


def conv2d_forward(x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """One flattened dot product per output value.

    x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn].
    """
    mb_size = x.shape[0]
    kh, kw, _, ychn = k.shape
    x_ext = _extend(x, geo)
    # k_flat[ym] is output channel ym's kernel in (kernel row, kernel col, channel) order
    k_flat = k.transpose([3, 0, 1, 2]).reshape([ychn, -1])

    conv = np.zeros((mb_size, geo.yh, geo.yw, ychn), dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                rs, cs = r * geo.sh, c * geo.sw
                xe_flat = x_ext[n, rs : rs + kh, cs : cs + kw, :].flatten()
                for ym in range(ychn):
                    conv[n, r, c, ym] = (xe_flat * k_flat[ym]).sum()
    return conv + b


def conv2d_backward(
    g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d_forward`, one output pixel at a time.

    For output pixel ``(n, r, c)`` with window ``w`` (flattened, length
    kh*kw*xchn) and gradient ``g = g_y[n, r, c]`` (length ychn):
    ``g_k_flat += outer(w, g)`` and the window's slice of ``g_x_ext`` gains
    ``k_flat @ g``. Returns g_x [mb, xh, xw, xchn], g_k like k, g_b [ychn].
    """
    mb_size, xh, xw, xchn = x.shape
    kh, kw, _, ychn = k.shape
    top, _, left, _ = geo.pads
    x_ext = _extend(x, geo)
    k_flat = k.reshape([kh * kw * xchn, ychn])

    g_x_ext = np.zeros(x_ext.shape, dtype=x.dtype)
    g_k_flat = np.zeros(k_flat.shape, dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                rs, cs = r * geo.sh, c * geo.sw
                g = g_y[n, r, c, :]
                xe_flat = x_ext[n, rs : rs + kh, cs : cs + kw, :].flatten()
                g_k_flat += np.outer(xe_flat, g)
                g_x_ext[n, rs : rs + kh, cs : cs + kw, :] += (k_flat @ g).reshape([kh, kw, xchn])

    g_x = g_x_ext[:, top : top + xh, left : left + xw, :].copy()
    g_b = g_y.sum(axis=(0, 1, 2))
    return (g_x if input_grad else None), g_k_flat.reshape(k.shape), g_b


def _window(geo: PoolGeometry, r: int, c: int) -> tuple[slice, slice]:
    """Row and column slices of output pixel (r, c)'s pooling window."""
    return slice(r * geo.sh, r * geo.sh + geo.kh), slice(c * geo.sw, c * geo.sw + geo.kw)


def max_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Slice max per output pixel: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    y = np.zeros((mb_size, geo.yh, geo.yw, chn), dtype=x.dtype)
    for r in range(geo.yh):
        for c in range(geo.yw):
            rows, cols = _window(geo, r, c)
            y[:, r, c, :] = x[:, rows, cols, :].max(axis=(1, 2))
    return y


def max_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Route g_y to each window's first maximum (row-major order); returns g_x like x."""
    mb_size, _, _, chn = x.shape
    area = geo.kh * geo.kw
    g_x = np.zeros(x.shape, dtype=x.dtype)
    for r in range(geo.yh):
        for c in range(geo.yw):
            rows, cols = _window(geo, r, c)
            # window flattened to [mb, kh*kw, chn]; argmax returns the first max
            win = x[:, rows, cols, :].reshape([mb_size, area, chn])
            idx = win.argmax(axis=1)
            g_win = np.zeros([mb_size, area, chn], dtype=x.dtype)
            np.put_along_axis(g_win, idx[:, None, :], g_y[:, r, c, None, :], axis=1)
            g_x[:, rows, cols, :] += g_win.reshape([mb_size, geo.kh, geo.kw, chn])
    return g_x


def avg_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Slice mean per output pixel: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    y = np.zeros((mb_size, geo.yh, geo.yw, chn), dtype=x.dtype)
    for r in range(geo.yh):
        for c in range(geo.yw):
            rows, cols = _window(geo, r, c)
            y[:, r, c, :] = x[:, rows, cols, :].mean(axis=(1, 2))
    return y


def avg_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Add g_y / (kh*kw) to every pixel of each window; returns g_x like x."""
    g_x = np.zeros(x.shape, dtype=x.dtype)
    share = g_y / (geo.kh * geo.kw)
    for r in range(geo.yh):
        for c in range(geo.yw):
            rows, cols = _window(geo, r, c)
            g_x[:, rows, cols, :] += share[:, r, c, None, None, :]
    return g_x


def ext_regions(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """One flattened x_ext slice per output pixel: cols [mb*yh*yw, kh*kw*xchn]."""
    mb_size, _, _, xchn = x.shape
    x_ext = _extend(x, geo)
    cols = np.zeros((mb_size, geo.yh, geo.yw, geo.kh * geo.kw * xchn), dtype=x.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                rs, cs = r * geo.sh, c * geo.sw
                cols[n, r, c] = x_ext[n, rs : rs + geo.kh, cs : cs + geo.kw, :].flatten()
    return cols.reshape([mb_size * geo.yh * geo.yw, -1])


def undo_ext_regions(cols: np.ndarray, x_shape: tuple, geo: ConvGeometry) -> np.ndarray:
    """Add each row of cols back onto its x_ext slice, then crop the padding.

    cols [mb*yh*yw, kh*kw*xchn] -> g_x [mb, xh, xw, xchn].
    """
    mb_size, xh, xw, xchn = x_shape
    top, bottom, left, right = geo.pads
    regs = cols.reshape([mb_size, geo.yh, geo.yw, geo.kh, geo.kw, xchn])
    g_ext = np.zeros((mb_size, top + xh + bottom, left + xw + right, xchn), dtype=cols.dtype)
    for n in range(mb_size):
        for r in range(geo.yh):
            for c in range(geo.yw):
                rs, cs = r * geo.sh, c * geo.sw
                g_ext[n, rs : rs + geo.kh, cs : cs + geo.kw, :] += regs[n, r, c]
    return g_ext[:, top : top + xh, left : left + xw, :].copy()
