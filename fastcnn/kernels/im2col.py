"""The book's NumPy path (the ``numpy`` backend): im2col plus one matrix product.

Convolution copies every receptive field of the padded input into one row
of a matrix (``get_ext_regions``, the seed's loop over output pixels, here
with stride and explicit padding), multiplies it by the kernel reshaped to
``[kh*kw*xchn, ychn]`` and adds the bias. The backward pass is two more
matrix products and the scatter-add ``undo_ext_regions``. Pooling uses the
seed's reshape/transpose/argmax trick when windows tile the input, and an
im2col gather of windows (the book's ``Pooling`` layer) otherwise.
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


def get_ext_regions(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Receptive fields of padded x, in the seed's layout.

    x [mb, xh, xw, xchn] -> regs [yh, yw, mb, kh, kw, xchn]: one Python
    iteration per output pixel copies that pixel's window for the whole batch.
    """
    mb_size, xh, xw, xchn = x.shape
    kh, kw, sh, sw = geo.kh, geo.kw, geo.sh, geo.sw
    top, bottom, left, right = geo.pads

    x_ext = np.zeros((mb_size, top + xh + bottom, left + xw + right, xchn), dtype=x.dtype)
    x_ext[:, top : top + xh, left : left + xw, :] = x
    regs = np.zeros((geo.yh, geo.yw, mb_size * kh * kw * xchn), dtype=x.dtype)

    for r in range(geo.yh):
        for c in range(geo.yw):
            regs[r, c, :] = x_ext[:, r * sh : r * sh + kh, c * sw : c * sw + kw, :].flatten()

    return regs.reshape([geo.yh, geo.yw, mb_size, kh, kw, xchn])


def undo_get_ext_regions(regs: np.ndarray, x_shape: tuple, geo: ConvGeometry) -> np.ndarray:
    """Adjoint of :func:`get_ext_regions`: regs [yh, yw, mb, kh, kw, xchn] -> g_x.

    Windows overlap, so each input pixel sums the gradients of every window
    that copied it; the padding border is cropped away at the end.
    """
    mb_size, xh, xw, xchn = x_shape
    kh, kw, sh, sw = geo.kh, geo.kw, geo.sh, geo.sw
    top, bottom, left, right = geo.pads

    gx_ext = np.zeros((mb_size, top + xh + bottom, left + xw + right, xchn), dtype=regs.dtype)
    for r in range(geo.yh):
        for c in range(geo.yw):
            gx_ext[:, r * sh : r * sh + kh, c * sw : c * sw + kw, :] += regs[r, c]

    return gx_ext[:, top : top + xh, left : left + xw, :].copy()


def ext_regions(x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """im2col matrix: x [mb, xh, xw, xchn] -> cols [mb*yh*yw, kh*kw*xchn].

    Rows run over (batch, output row, output col) after moving the batch axis
    of :func:`get_ext_regions` to the front.
    """
    mb_size, _, _, xchn = x.shape
    regs = get_ext_regions(x, geo).transpose([2, 0, 1, 3, 4, 5])
    return regs.reshape([mb_size * geo.yh * geo.yw, geo.kh * geo.kw * xchn])


def undo_ext_regions(cols: np.ndarray, x_shape: tuple, geo: ConvGeometry) -> np.ndarray:
    """col2im: cols [mb*yh*yw, kh*kw*xchn] -> g_x [mb, xh, xw, xchn] (sums overlaps)."""
    mb_size, _, _, xchn = x_shape
    regs = cols.reshape([mb_size, geo.yh, geo.yw, geo.kh, geo.kw, xchn])
    return undo_get_ext_regions(regs.transpose([1, 2, 0, 3, 4, 5]), x_shape, geo)


def conv2d_forward(x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """conv = ext_regions(x) @ k_flat + b.

    x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn].
    """
    mb_size = x.shape[0]
    kh, kw, xchn, ychn = k.shape
    x_flat = ext_regions(x, geo)
    k_flat = k.reshape([kh * kw * xchn, ychn])
    conv_flat = np.matmul(x_flat, k_flat) + b
    return conv_flat.reshape([mb_size, geo.yh, geo.yw, ychn])


def conv2d_backward(
    g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry, input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``x_flat @ k_flat + b`` as matrix products.

    G_k_flat = x_flat.T @ G_flat, G_x_flat = G_flat @ k_flat.T (then col2im),
    G_b = column sums of G_flat. Returns g_x like x, g_k like k, g_b [ychn].
    """
    kh, kw, xchn, ychn = k.shape
    x_flat = ext_regions(x, geo)
    k_flat = k.reshape([kh * kw * xchn, ychn])
    g_flat = g_y.reshape([-1, ychn])

    g_k_flat = np.matmul(x_flat.T, g_flat)
    g_b = g_flat.sum(axis=0)
    if not input_grad:
        return None, g_k_flat.reshape(k.shape), g_b

    g_x_flat = np.matmul(g_flat, k_flat.T)
    g_x = undo_ext_regions(g_x_flat, x.shape, geo)
    return g_x, g_k_flat.reshape(k.shape), g_b


# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------


def _tiles(geo: PoolGeometry) -> bool:
    """True when windows sit side by side (window == stride): the reshape path applies."""
    return geo.kh == geo.sh and geo.kw == geo.sw


def _tile_rows(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Seed layout for window == stride: x -> [mb*yh*yw*chn, kh*kw].

    Rows and columns left over at the bottom/right (no full window) are
    cropped first, so the reshape into [mb, yh, kh, yw, kw, chn] is exact.
    """
    mb_size, _, _, chn = x.shape
    x0 = x[:, : geo.yh * geo.kh, : geo.yw * geo.kw, :]
    x1 = x0.reshape([mb_size, geo.yh, geo.kh, geo.yw, geo.kw, chn])
    x2 = x1.transpose(0, 1, 3, 5, 2, 4)
    return x2.reshape([-1, geo.kh * geo.kw])


def _untile_rows(g_rows: np.ndarray, x_shape: tuple, geo: PoolGeometry) -> np.ndarray:
    """Adjoint of :func:`_tile_rows`: [mb*yh*yw*chn, kh*kw] -> g_x (zeros in cropped parts)."""
    mb_size, _, _, chn = x_shape
    g2 = g_rows.reshape([mb_size, geo.yh, geo.yw, chn, geo.kh, geo.kw])
    g3 = g2.transpose([0, 1, 4, 2, 5, 3])
    g_x = np.zeros(x_shape, dtype=g_rows.dtype)
    g_x[:, : geo.yh * geo.kh, : geo.yw * geo.kw, :] = g3.reshape(
        [mb_size, geo.yh * geo.kh, geo.yw * geo.kw, chn]
    )
    return g_x


def _as_conv(geo: PoolGeometry) -> ConvGeometry:
    """Pooling windows as an unpadded conv geometry, for the im2col gather."""
    return ConvGeometry(geo.kh, geo.kw, geo.sh, geo.sw, (0, 0, 0, 0), geo.yh, geo.yw)


def _gather_rows(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Any stride: windows via ext_regions -> [mb*yh*yw*chn, kh*kw]."""
    chn = x.shape[3]
    cols = ext_regions(x, _as_conv(geo))  # [mb*yh*yw, kh*kw*chn]
    cols = cols.reshape([-1, geo.kh * geo.kw, chn]).transpose(0, 2, 1)
    return cols.reshape([-1, geo.kh * geo.kw])


def _scatter_rows(g_rows: np.ndarray, x_shape: tuple, geo: PoolGeometry) -> np.ndarray:
    """Adjoint of :func:`_gather_rows` (overlapping windows accumulate)."""
    chn = x_shape[3]
    cols = g_rows.reshape([-1, chn, geo.kh * geo.kw]).transpose(0, 2, 1)
    cols = np.ascontiguousarray(cols).reshape([-1, geo.kh * geo.kw * chn])
    return undo_ext_regions(cols, x_shape, _as_conv(geo))


def _rows(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    return _tile_rows(x, geo) if _tiles(geo) else _gather_rows(x, geo)


def _unrows(g_rows: np.ndarray, x_shape: tuple, geo: PoolGeometry) -> np.ndarray:
    return _untile_rows(g_rows, x_shape, geo) if _tiles(geo) else _scatter_rows(g_rows, x_shape, geo)


def max_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Max of each window: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    x3 = _rows(x, geo)
    idxs = np.argmax(x3, axis=1)
    y_flat = x3[np.arange(x3.shape[0]), idxs]
    return y_flat.reshape([mb_size, geo.yh, geo.yw, chn])


def max_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Gradient to the first maximum of each window (np.argmax order); returns g_x like x."""
    x3 = _rows(x, geo)
    idxs = np.argmax(x3, axis=1)
    gx1 = np.zeros(x3.shape, dtype=x.dtype)
    gx1[np.arange(x3.shape[0]), idxs] = g_y.reshape(-1)
    return _unrows(gx1, x.shape, geo)


def avg_pool_forward(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Mean of each window: x [mb, xh, xw, chn] -> y [mb, yh, yw, chn]."""
    mb_size, _, _, chn = x.shape
    y_flat = np.mean(_rows(x, geo), axis=1)
    return y_flat.reshape([mb_size, geo.yh, geo.yw, chn])


def avg_pool_backward(g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Each window pixel gets g_y / (kh*kw); returns g_x like x."""
    area = geo.kh * geo.kw
    gy_flat = g_y.reshape(-1) / area
    gx1 = np.repeat(gy_flat[:, None], area, axis=1)
    return _unrows(gx1, x.shape, geo)
