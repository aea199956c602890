"""The contract functions of the numba backends, around a set of compiled kernels.

``NumbaHost`` holds what runs in Python around the compiled loops: choosing a
kernel for the shapes, padding weights to the register blocks, allocating
outputs and per-image partials, summing those in a fixed order. The kernels
come in as a namespace with the names of ``fastcnn.kernels.numba_kernels``:
that module itself (the ``numba`` backend, JIT-compiled and cached), or the
same functions compiled ahead of time (the ``numba-aot`` backend, see
``fastcnn.kernels.aot``). So both backends run the same code on the same
numbers, and this module imports neither numba nor LLVM.

Arguments arrive validated and C-contiguous from ``fastcnn.kernels``; the
wrappers take ``out=None``: a checked array they write the result into in
place of their ``np.empty`` (see ``fastcnn.kernels.WRITES_INTO_OUT``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..runtime import single_threaded_blas
from . import blocked_matmul
from .shapes import ConvGeometry, PoolGeometry


def _output(out, shape, dtype) -> np.ndarray:
    """The array a wrapper writes its result into: ``out`` (checked by the caller), else a new one."""
    return np.empty(shape, dtype) if out is None else out


def _unused_g_x(x) -> np.ndarray:
    """The ``g_x`` argument of a backward kernel told not to write it: one value per image,
    so a call cut along the batch (numba-aot) cuts it like the real one."""
    return np.empty((x.shape[0], 1, 1, 1), x.dtype)


def _elementwise_out(out, like: np.ndarray) -> np.ndarray:
    """A new array like ``like``, or ``out`` once checked: a flat view of it must write through."""
    if out is None:
        return np.empty_like(like)
    if not isinstance(out, np.ndarray) or out.shape != like.shape or out.dtype != like.dtype:
        raise ValueError(f"out must be an array of shape {like.shape} and dtype {like.dtype}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be C-contiguous and writeable (shape {like.shape}, dtype {like.dtype})")
    return out


class NumbaHost:
    """The kernel contract over one set of compiled kernels.

    ``kernels``: a namespace with the compiled functions of ``numba_kernels``
    (``_conv_fwd``, ``_max_fwd``, ...). ``wide``: the register-block variant, passed
    to the backward kernels and used for the forward choice and the padding: blocks
    for 32 vector registers (AVX-512) if True, for 16 (AVX2) if False. Both run on
    any CPU; the backends pass this CPU's (``numba_kernels._WIDE``). The dispatch
    table is in ``numba_kernels``. ``threads``: returns the thread count the dense
    products split over.

    An instance is a backend (``fastcnn.kernels.get_backend``): its methods are the
    contract functions, with the capabilities below.
    """

    #: writes results into a given ``out`` itself (``fastcnn.kernels.ops``)
    WRITES_INTO_OUT = True
    #: the kernels own the cores: models run BLAS single-threaded around them
    SINGLE_THREADED_BLAS = True

    def __init__(self, kernels, *, wide: bool, threads: Callable[[], int]):
        self.k = kernels
        self.wide = bool(wide)
        self.threads = threads
        # one-input-channel backward: channels padded for 5-wide g_x and 3- (or 2-) wide g_k blocks
        self.c1_chn = 15 if self.wide else 10

    # ----------------------------------------------------------------------
    # convolution
    # ----------------------------------------------------------------------

    def _forward_blocked(self, x, k, b, geo, five, out=None):
        """conv2d_forward, stride 1, through _conv_fwd_blocked: taps / channels / bias
        zero padded to the block (5 / 5, or 4 / 3)."""
        taps, chns = (5, 5) if five else (4, 3)
        kh, kw, xc, yc = k.shape
        ntap = xc * kh * kw
        wt = np.zeros((-(-ntap // taps) * taps, -(-yc // chns) * chns), x.dtype)
        wt[:ntap, :yc] = k.transpose(2, 0, 1, 3).reshape(ntap, yc)  # tap order (ci, ky, kx)
        bp = np.zeros(wt.shape[1], x.dtype)
        bp[:yc] = b
        hp = geo.yh + kh - 1
        wp = geo.yw + kw - 1
        offs = np.zeros(wt.shape[0], np.int64)
        offs[:ntap] = self.k._tap_offsets(kh, kw, xc, (hp + 1) * wp, wp)
        y = _output(out, (x.shape[0], geo.yh, geo.yw, yc), x.dtype)
        self.k._conv_fwd_blocked(x, offs, wt, bp, kh, kw, geo.pads[0], geo.pads[2], y, five)
        return y

    def _fwd4x3(self, yc) -> bool:
        """Narrow blocks (AVX2): 4 taps x 3 channels beat _corr's 4 x 2 (little channel padding only)."""
        return not self.wide and (yc % 3 == 0 or yc > 8)

    def _backward_c1(self, g_y, x, k, geo, input_grad, out=None):
        """conv2d_backward for one input channel, stride 1 (see _conv_bwd_c1)."""
        mb = x.shape[0]
        kh, kw, _, yc = k.shape
        ntap = kh * kw
        ycp = -(-yc // self.c1_chn) * self.c1_chn
        ntap5 = -(-ntap // 5) * 5
        wtap = np.zeros((ycp, ntap5), x.dtype)
        wtap[:yc, :ntap] = k.reshape(ntap, yc).T
        g_x = _output(out, x.shape, x.dtype) if input_grad else _unused_g_x(x)
        gk_part = np.empty((mb, ntap5, ycp), x.dtype)
        gb_part = np.empty((mb, yc), x.dtype)
        self.k._conv_bwd_c1(g_y, x, wtap, kh, kw, geo.pads[0], geo.pads[2], g_x, gk_part, gb_part, input_grad,
                            self.wide)
        g_k = self.k._sum_batch(gk_part.reshape(mb, -1)).reshape(ntap5, ycp)[:ntap, :yc]
        g_b = self.k._sum_batch(gb_part)
        return (g_x if input_grad else None), np.ascontiguousarray(g_k).reshape(k.shape), g_b

    def conv2d_forward(self, x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry,
                       out: np.ndarray | None = None) -> np.ndarray:
        """x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn] (or ``out``)."""
        if geo.sh != 1 or geo.sw != 1:
            return self._strided_forward(x, k, b, geo, out)
        if x.shape[3] == 1:  # 5 taps x 5 channels
            return self._forward_blocked(x, k, b, geo, True, out)
        if self._fwd4x3(k.shape[3]):
            return self._forward_blocked(x, k, b, geo, False, out)
        kh, kw, xc, yc = k.shape
        y = _output(out, (x.shape[0], geo.yh, geo.yw, yc), x.dtype)
        wt = np.ascontiguousarray(k.transpose(2, 0, 1, 3)).reshape(xc * kh * kw, yc)  # tap order (ci, ky, kx)
        self.k._conv_fwd(x, wt, b, kh, kw, geo.pads[0], geo.pads[2], y)
        return y

    def conv2d_backward(self, g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry,
                        input_grad: bool = True, out: np.ndarray | None = None):
        """g_y [mb, yh, yw, ychn] -> (g_x like x or None without input_grad, g_k like k, g_b [ychn]).

        ``out`` (only with input_grad) receives g_x; g_k and g_b are always new arrays.
        """
        if geo.sh != 1 or geo.sw != 1:
            return self._strided_backward(g_y, x, k, geo, input_grad, out)
        if x.shape[3] == 1:
            return self._backward_c1(g_y, x, k, geo, input_grad, out)
        mb = x.shape[0]
        kh, kw, xc, yc = k.shape
        g_x = _output(out, x.shape, x.dtype) if input_grad else _unused_g_x(x)
        gk_part = np.empty((mb, xc * kh * kw, yc), x.dtype)
        gb_part = np.empty((mb, yc), x.dtype)
        # flipped kernel in tap order (co, ky, kx): [yc*kh*kw, xc]
        ntap = yc * kh * kw
        wt_flip = np.zeros((-(-ntap // 4) * 4, -(-xc // 3) * 3), x.dtype)
        wt_flip[:ntap, :xc] = k[::-1, ::-1].transpose(3, 0, 1, 2).reshape(ntap, xc)
        self.k._conv_bwd(g_y, x, wt_flip, kh, kw, geo.pads[0], geo.pads[2], g_x, gk_part, gb_part, input_grad,
                         self.wide)
        # fixed-order sums over the batch: the same bits whatever the thread schedule
        g_k = self.k._sum_batch(gk_part.reshape(mb, -1)).reshape(xc, kh, kw, yc).transpose(1, 2, 0, 3)
        return (g_x if input_grad else None), np.ascontiguousarray(g_k), self.k._sum_batch(gb_part)

    def _strided_forward(self, x, k, b, geo, out=None):
        """Stride > 1: parallel im2col gather, one sgemm (into ``out`` if given), bias."""
        cols = self.ext_regions(x, geo)
        y = None if out is None else out.reshape(cols.shape[0], k.shape[3])
        with single_threaded_blas():  # the kernels own the cores (see fastcnn.runtime)
            y = np.matmul(cols, k.reshape(-1, k.shape[3]), out=y)
        y += b
        return y.reshape(x.shape[0], geo.yh, geo.yw, k.shape[3]) if out is None else out

    def _strided_backward(self, g_y, x, k, geo, input_grad, out=None):
        """Stride > 1: g_k = cols.T @ g, g_x = col2im(g @ k_flat.T), g_b = column sums."""
        g = g_y.reshape(-1, k.shape[3])
        k_flat = k.reshape(-1, k.shape[3])
        cols = self.ext_regions(x, geo)
        with single_threaded_blas():  # the kernels own the cores (see fastcnn.runtime)
            g_k = (cols.T @ g).reshape(k.shape)
            g_cols = None if not input_grad else np.ascontiguousarray(g @ k_flat.T)
        if not input_grad:
            return None, g_k, self.k._sum_batch(g)
        g_x = self._col2im(g_cols, geo, _output(out, x.shape, x.dtype))
        return g_x, g_k, self.k._sum_batch(g)

    # ----------------------------------------------------------------------
    # im2col / col2im
    # ----------------------------------------------------------------------

    def ext_regions(self, x: np.ndarray, geo: ConvGeometry) -> np.ndarray:
        """x [mb, xh, xw, xchn] -> cols [mb*yh*yw, kh*kw*xchn] (rows: n, oy, ox; columns: ky, kx, ci)."""
        mb, _, _, xc = x.shape
        cols = np.empty((mb * geo.yh * geo.yw, geo.kh * geo.kw * xc), x.dtype)
        self.k._ext_regions(x, geo.kh, geo.kw, geo.sh, geo.sw, geo.pads[0], geo.pads[2], geo.yh, geo.yw, cols)
        return cols

    def undo_ext_regions(self, cols: np.ndarray, x_shape, geo: ConvGeometry) -> np.ndarray:
        """cols [mb*yh*yw, kh*kw*xchn] -> g_x [mb, xh, xw, xchn], padding cropped."""
        return self._col2im(cols, geo, np.empty(tuple(x_shape), cols.dtype))

    def _col2im(self, cols: np.ndarray, geo: ConvGeometry, g_x: np.ndarray) -> np.ndarray:
        """undo_ext_regions into ``g_x`` (every element is written); returns g_x."""
        self.k._undo_ext_regions(cols, geo.kh, geo.kw, geo.sh, geo.sw, geo.pads[0], geo.pads[2],
                                 geo.yh, geo.yw, g_x)
        return g_x

    # ----------------------------------------------------------------------
    # pooling
    # ----------------------------------------------------------------------

    def max_pool_forward(self, x: np.ndarray, geo: PoolGeometry, out: np.ndarray | None = None) -> np.ndarray:
        """x [mb, xh, xw, c] -> y [mb, yh, yw, c] (``out`` if given)."""
        y = _output(out, (x.shape[0], geo.yh, geo.yw, x.shape[3]), x.dtype)
        self.k._max_fwd(x, geo.kh, geo.kw, geo.sh, geo.sw, y)
        return y

    def max_pool_backward(self, g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry,
                          out: np.ndarray | None = None) -> np.ndarray:
        """g_y [mb, yh, yw, c] -> g_x [mb, xh, xw, c] (``out`` if given)."""
        g_x = _output(out, x.shape, x.dtype)
        self.k._max_bwd(g_y, x, geo.kh, geo.kw, geo.sh, geo.sw, g_x)
        return g_x

    def avg_pool_forward(self, x: np.ndarray, geo: PoolGeometry, out: np.ndarray | None = None) -> np.ndarray:
        """x [mb, xh, xw, c] -> y [mb, yh, yw, c] (``out`` if given)."""
        y = _output(out, (x.shape[0], geo.yh, geo.yw, x.shape[3]), x.dtype)
        self.k._avg_fwd(x, geo.kh, geo.kw, geo.sh, geo.sw, y)
        return y

    def avg_pool_backward(self, g_y: np.ndarray, x: np.ndarray, geo: PoolGeometry,
                          out: np.ndarray | None = None) -> np.ndarray:
        """g_y [mb, yh, yw, c] -> g_x [mb, xh, xw, c] (``out`` if given); x only gives the shape."""
        g_x = _output(out, x.shape, x.dtype)
        self.k._avg_bwd(g_y, geo.kh, geo.kw, geo.sh, geo.sw, g_x)
        return g_x

    # ----------------------------------------------------------------------
    # elementwise steps around the kernels, and the dense layers' products
    # ----------------------------------------------------------------------

    def relu_forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``max(x, 0)`` in one pass, into ``out`` or a new array (see ``_relu``).

        ``out``: C-contiguous, writeable, the shape and dtype of x; x itself, or not overlapping it.
        """
        x = np.ascontiguousarray(x)
        out = _elementwise_out(out, x)
        self.k._relu(x.reshape(-1), out.reshape(-1))
        return out

    def relu_backward(self, g_y: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``g_y * (y > 0)`` in one pass, into ``out`` (shaped like y) or a new array."""
        y = np.ascontiguousarray(y)
        out = _elementwise_out(out, y)
        self.k._relu_backward(np.ascontiguousarray(g_y, y.dtype).reshape(-1), y.reshape(-1), out.reshape(-1))
        return out

    def adam_update(self, p, g, m, v, lr_t: float, beta1: float, beta2: float, eps: float) -> None:
        """One Adam step in place on ``p``, ``m``, ``v``, fused into a single pass."""
        if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
            raise ValueError("adam_update needs C-contiguous parameter and state arrays")
        if not (p.dtype == m.dtype == v.dtype):
            raise TypeError(f"adam_update needs one dtype for p, m, v; got {p.dtype}, {m.dtype}, {v.dtype}")
        g = np.ascontiguousarray(g, p.dtype)
        self.k._adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                     float(lr_t), float(beta1), float(beta2), float(eps))

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``a @ b`` in fixed row pieces on the kernels' thread count (BLAS itself single-threaded)."""
        return blocked_matmul.matmul(a, b, self.threads(), out)
