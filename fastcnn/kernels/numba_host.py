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
from .masks import DROPOUT, NO_DRAW, Draw
from .shapes import ConvGeometry, PoolGeometry

#: a stride-1 conv goes through im2col + sgemm (``gemm_conv``) when its output map has at
#: most this many pixels per image and its windows at least ``GEMM_MIN_TAPS`` inputs: the
#: per-image kernels then run short rows and spend their time on loop overhead, while the
#: sgemm gets a well-shaped product. Measured on 2 cores, forward + backward (DeepConvNet,
#: batch 100): 8x8x64 -> 64 71.0 ms direct against 11.1 via sgemm, 8x8x32 -> 64 43.8 / 5.6,
#: 14x14x16 -> 32 15.7 / 6.8, 16x16 out of 14x14x32 -> 32 32.6 / 24.5; larger maps lose
#: (28x28x16 -> 16: 16.2 / 38.9; 24x24x12 -> 24 at batch 32: 4.9 / 5.1), and so do few taps
#: (an 11x10x9 input, 81 taps: 0.24 / 0.24 ms). docs/benchmarks.md, "Small maps through sgemm".
GEMM_MAX_PIXELS = 256
GEMM_MIN_TAPS = 128


def gemm_conv(geo: ConvGeometry, xchn: int) -> bool:
    """True if a conv of this geometry on ``xchn`` input channels runs as im2col + sgemm: strided
    convs, and stride-1 convs with small output maps and many taps (see ``GEMM_MAX_PIXELS``)."""
    if geo.sh != 1 or geo.sw != 1:
        return True
    return geo.yh * geo.yw <= GEMM_MAX_PIXELS and xchn * geo.kh * geo.kw >= GEMM_MIN_TAPS


def _output(out, shape, dtype) -> np.ndarray:
    """The array a wrapper writes its result into: ``out`` (checked by the caller), else a new one."""
    return np.empty(shape, dtype) if out is None else out


def _unused_g_x(x) -> np.ndarray:
    """The ``g_x`` argument of a backward kernel told not to write it: one value per image,
    so a call cut along the batch (numba-aot) cuts it like the real one."""
    return np.empty((x.shape[0], 1, 1, 1), x.dtype)


def _no_mask(mb: int) -> np.ndarray:
    """The fused kernels' ``mask`` argument when no dropout runs in them: one byte per image, so a
    call cut along the batch (numba-aot) cuts it like a real one."""
    return np.zeros((mb, 1, 1, 1), np.uint8)


def _check_mask(mask, shape) -> None:
    """A dropout mask the fused kernels read or write: uint8, C-contiguous, the pooled output's shape."""
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.uint8 and mask.shape == tuple(shape)
            and mask.flags.c_contiguous):
        got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"a fused dropout needs mask: a C-contiguous uint8 array of shape {tuple(shape)}, "
                         f"got {got}")


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
    #: a stride-1 conv, its activation and the pooling after it run as one kernel
    #: (``conv_pool_*`` below; ``fastcnn.steps`` makes them one step)
    FUSES_CONV_POOL = True

    def __init__(self, kernels, *, wide: bool, threads: Callable[[], int]):
        self.k = kernels
        self.wide = bool(wide)
        self.threads = threads
        # one-input-channel backward: channels padded for 5-wide g_x and 3- (or 2-) wide g_k blocks
        self.c1_chn = 15 if self.wide else 10
        #: tap offsets of a stride-1 forward per (kernel shape, geometry, padded length): they
        #: depend on shapes only, so each layer computes them once, not at every step (read-only)
        self._offsets: dict[tuple, np.ndarray] = {}

    # ----------------------------------------------------------------------
    # convolution
    # ----------------------------------------------------------------------

    @staticmethod
    def _fwd4x3(yc) -> bool:
        """4 taps x 3 channels beat _corr's 4 x 2 where little channel padding is needed, on AVX2
        and on AVX-512 (measured there: the flowers convs 14-24 % faster, 12x12x30 -> 30 45 %;
        4 output channels, padded to 6, 38 % slower; docs/benchmarks.md, "Forward blocks")."""
        return yc % 3 == 0 or yc > 8

    def _forward_weights(self, k, b, geo):
        """A stride-1 forward as the dispatch table chooses it: ``(blocked, five, offs, wt, bias)``,
        the arguments of ``_conv_image``. wt is k in tap order (ci, ky, kx); blocked: _corr5 if
        five else _corr4x3, taps / channels / bias zero padded to the block (5 / 5, or 4 / 3);
        else _corr, offs None (``_conv_fwd`` makes its own)."""
        kh, kw, xc, yc = k.shape
        ntap = xc * kh * kw
        five = xc == 1  # 5 taps x 5 channels
        if not five and not self._fwd4x3(yc):
            return False, False, None, np.ascontiguousarray(k.transpose(2, 0, 1, 3)).reshape(ntap, yc), b
        taps, chns = (5, 5) if five else (4, 3)
        wt = np.empty((-(-ntap // taps) * taps, -(-yc // chns) * chns), k.dtype)
        bp = np.empty(wt.shape[1], k.dtype)
        self.k._tap_weights(np.ascontiguousarray(k), np.ascontiguousarray(b, k.dtype), wt, bp)
        return True, five, self._tap_offsets(k, geo, wt.shape[0]), wt, bp

    def _tap_offsets(self, k, geo, length: int | None = None) -> np.ndarray:
        """Tap offsets into the padded planar x frame of a stride-1 forward (``_tap_offsets``),
        zero padded to ``length`` (blocked kernels); cached per shape, never written to."""
        key = (k.shape, geo, length)
        offs = self._offsets.get(key)
        if offs is None:
            kh, kw, xc, _ = k.shape
            hp = geo.yh + kh - 1
            wp = geo.yw + kw - 1
            taps = self.k._tap_offsets(kh, kw, xc, (hp + 1) * wp, wp)
            offs = taps if length is None else np.zeros(length, np.int64)
            offs[: taps.shape[0]] = taps
            self._offsets[key] = offs
        return offs

    def _backward_weights(self, k):
        """A stride-1 backward's weights: ``(True, wtap)`` for one input channel (_conv_bwd_c1:
        [ycp, ntap5], channels padded to c1_chn, taps to 5), else ``(False, wt_flip)`` (_conv_bwd:
        the flipped kernel in tap order (co, ky, kx), [yc*kh*kw, xc] padded to 4 taps / 3 channels)."""
        kh, kw, xc, yc = k.shape
        if xc == 1:
            wtap = np.empty((-(-yc // self.c1_chn) * self.c1_chn, -(-(kh * kw) // 5) * 5), k.dtype)
            self.k._c1_weights(np.ascontiguousarray(k), wtap)
            return True, wtap
        wt_flip = np.empty((-(-(yc * kh * kw) // 4) * 4, -(-xc // 3) * 3), k.dtype)
        self.k._flipped_weights(np.ascontiguousarray(k), wt_flip)
        return False, wt_flip

    @staticmethod
    def _gradient_parts(x, k, c1, wt):
        """The per-image partials a stride-1 backward fills: gk_part [mb, taps, chns], gb_part [mb, yc]."""
        kh, kw, xc, yc = k.shape
        taps_chns = wt.shape[::-1] if c1 else (xc * kh * kw, yc)
        return np.empty((x.shape[0], *taps_chns), x.dtype), np.empty((x.shape[0], yc), x.dtype)

    def _sum_parts(self, k, c1, gk_part, gb_part):
        """(g_k like k, g_b): fixed-order sums over the batch, the same bits whatever the thread schedule."""
        g_k = np.empty(k.shape, k.dtype)
        g_b = np.empty(k.shape[3], k.dtype)
        self.k._sum_parts(gk_part, gb_part, bool(c1), g_k, g_b)
        return g_k, g_b

    def conv2d_forward(self, x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry,
                       out: np.ndarray | None = None) -> np.ndarray:
        """x [mb, xh, xw, xchn], k [kh, kw, xchn, ychn], b [ychn] -> y [mb, yh, yw, ychn] (or ``out``)."""
        if gemm_conv(geo, k.shape[2]):
            return self._gemm_forward(x, k, b, geo, out)
        blocked, five, offs, wt, bias = self._forward_weights(k, b, geo)
        kh, kw, _, yc = k.shape
        y = _output(out, (x.shape[0], geo.yh, geo.yw, yc), x.dtype)
        if blocked:
            self.k._conv_fwd_blocked(x, offs, wt, bias, kh, kw, geo.pads[0], geo.pads[2], y, five, self.wide)
        else:
            self.k._conv_fwd(x, wt, bias, kh, kw, geo.pads[0], geo.pads[2], y)
        return y

    def conv2d_backward(self, g_y: np.ndarray, x: np.ndarray, k: np.ndarray, geo: ConvGeometry,
                        input_grad: bool = True, out: np.ndarray | None = None):
        """g_y [mb, yh, yw, ychn] -> (g_x like x or None without input_grad, g_k like k, g_b [ychn]).

        ``out`` (only with input_grad) receives g_x; g_k and g_b are always new arrays.
        """
        if gemm_conv(geo, k.shape[2]):
            return self._gemm_backward(g_y, x, k, geo, input_grad, out)
        c1, wt = self._backward_weights(k)
        g_x = _output(out, x.shape, x.dtype) if input_grad else _unused_g_x(x)
        gk_part, gb_part = self._gradient_parts(x, k, c1, wt)
        args = (k.shape[0], k.shape[1], geo.pads[0], geo.pads[2], g_x, gk_part, gb_part, input_grad,
                self.wide)
        if c1:
            self.k._conv_bwd_c1(g_y, x, wt, *args)
        else:
            self.k._conv_bwd(g_y, x, wt, *args)
        g_k, g_b = self._sum_parts(k, c1, gk_part, gb_part)
        return (g_x if input_grad else None), g_k, g_b

    def _gemm_forward(self, x, k, b, geo, out=None):
        """im2col + sgemm (``gemm_conv``): parallel gather, the product cut in fixed pieces over the
        threads (``blocked_matmul``; into ``out`` if given), bias."""
        cols = self.ext_regions(x, geo)
        y = None if out is None else out.reshape(cols.shape[0], k.shape[3])
        with single_threaded_blas():  # the pieces own the cores (a no-op inside a model's step)
            y = self.matmul(cols, k.reshape(-1, k.shape[3]), out=y)
        y += b
        return y.reshape(x.shape[0], geo.yh, geo.yw, k.shape[3]) if out is None else out

    def _gemm_backward(self, g_y, x, k, geo, input_grad, out=None):
        """The backward of ``_gemm_forward``: g_k = cols.T @ g, g_x = col2im(g @ k_flat.T), g_b =
        column sums in row order (every product in fixed pieces: the same bits on any thread count)."""
        g = g_y.reshape(-1, k.shape[3])
        k_flat = k.reshape(-1, k.shape[3])
        cols = self.ext_regions(x, geo)
        with single_threaded_blas():  # the pieces own the cores (a no-op inside a model's step)
            g_k = self.matmul(cols.T, g).reshape(k.shape)
            g_cols = self.matmul(g, k_flat.T) if input_grad else None
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
    # a stride-1 convolution, its activation and the pooling after it, fused (numba_fused)
    # ----------------------------------------------------------------------

    @staticmethod
    def conv_pool_fusable(geo: ConvGeometry, act: str, pool: str, pool_geo: PoolGeometry,
                          xchn: int = 1) -> bool:
        """True if conv_pool_forward / _backward serve this conv (on ``xchn`` input channels) and
        pooling with the bits of the layers: a stride-1 conv (any size, padding, channels) that the
        layers run on the per-image kernels (not ``gemm_conv``), ``act`` 'relu' or 'none', ``pool``
        'avg' or 'max' (<= 128 elements)."""
        return (not gemm_conv(geo, xchn) and act in ("relu", "none")
                and (pool == "avg" or (pool == "max" and pool_geo.kh * pool_geo.kw <= 128)))

    @staticmethod
    def conv_pool_code_shape(mb: int, yc: int, geo: ConvGeometry, act: str, pool: str,
                             pool_geo: PoolGeometry) -> tuple:
        """Shape of the uint8 ``code`` conv_pool_forward writes for the backward (see numba_fused)."""
        if pool == "max":
            return (mb, pool_geo.yh, pool_geo.yw, yc)
        return (mb, geo.yh, geo.yw, yc) if act == "relu" else (mb, 1, 1, 1)

    @staticmethod
    def _pooling(act: str, pool: str, pool_geo: PoolGeometry) -> tuple:
        """The fused kernels' activation and pooling arguments: relu, avg, window, stride."""
        return act == "relu", pool == "avg", pool_geo.kh, pool_geo.kw, pool_geo.sh, pool_geo.sw

    def conv_pool_forward(self, x: np.ndarray, k: np.ndarray, b: np.ndarray, geo: ConvGeometry, act: str,
                          pool: str, pool_geo: PoolGeometry, out: np.ndarray | None = None,
                          code: np.ndarray | None = None, draw: Draw | None = None,
                          mask: np.ndarray | None = None):
        """x [mb, xh, xw, xchn] -> ``(y, code)``: y [mb, pyh, pyw, ychn] (or ``out``) = ``pool`` ('max'
        or 'avg', ``pool_geo``) of ``act`` ('relu' or 'none') of conv2d_forward(x, k, b, geo), one pass
        per image, the bits of the three; ``code`` (new, or the array given, conv_pool_code_shape)
        is what conv_pool_backward needs. The cases served: conv_pool_fusable.

        ``draw`` (``masks.Draw``, or None): a dropout or noise layer right after the pooling, applied
        to y as it is written, the bits of ``masks``' dropout_forward / add_noise on y; dropout's
        uint8 mask goes to ``mask`` (required then: C-contiguous, y's shape)."""
        blocked, five, offs, wt, bias = self._forward_weights(k, b, geo)
        offs = self._tap_offsets(k, geo) if offs is None else offs
        mb, yc = x.shape[0], k.shape[3]
        y = _output(out, (mb, pool_geo.yh, pool_geo.yw, yc), x.dtype)
        if code is None:
            code = np.empty(self.conv_pool_code_shape(mb, yc, geo, act, pool, pool_geo), np.uint8)
        args = (x, offs, wt, bias, k.shape[0], k.shape[1], geo.pads[0], geo.pads[2], geo.yh, geo.yw, blocked,
                five, *self._pooling(act, pool, pool_geo), y, code, self.wide)
        if draw is None or draw.mode == NO_DRAW.mode:  # the kernel without the draw code (numba_fused)
            self.k._conv_pool_fwd(*args)
            return y, code
        if draw.mode == DROPOUT:
            _check_mask(mask, y.shape)
        else:
            mask = _no_mask(mb)
        self.k._conv_pool_fwd_draw(*args, draw.mode, draw.key, 0, draw.p1, draw.p2, mask)
        return y, code

    def conv_pool_backward(self, g_y: np.ndarray, code: np.ndarray, x: np.ndarray, k: np.ndarray,
                           geo: ConvGeometry, act: str, pool: str, pool_geo: PoolGeometry,
                           input_grad: bool = True, out: np.ndarray | None = None,
                           mask: np.ndarray | None = None, keep: float = 1.0):
        """g_y [mb, pyh, pyw, ychn] of conv_pool_forward's y, and its ``code`` -> (g_x like x or None
        without input_grad, g_k, g_b): conv2d_backward after the pooling's and the activation's
        backward, the same bits; ``out`` receives g_x. With a dropout's ``mask`` (conv_pool_forward's)
        and ``keep``, g_y is the dropout's output gradient: its backward runs first, the same bits."""
        c1, wt = self._backward_weights(k)
        g_x = _output(out, x.shape, x.dtype) if input_grad else _unused_g_x(x)
        gk_part, gb_part = self._gradient_parts(x, k, c1, wt)
        g_y = np.ascontiguousarray(g_y, x.dtype)
        args = (x, wt, k.shape[0], k.shape[1], geo.pads[0], geo.pads[2], geo.yh, geo.yw,
                *self._pooling(act, pool, pool_geo), g_x, gk_part, gb_part, bool(input_grad), self.wide)
        if mask is None:  # the kernels without the dropout code (numba_fused)
            if c1:
                self.k._conv_pool_bwd_c1(g_y, code, *args)
            else:
                self.k._conv_pool_bwd(g_y, code, *args)
        else:
            _check_mask(mask, g_y.shape)
            dropout = (True, mask, 1.0 / float(keep))
            if c1:
                self.k._conv_pool_bwd_drop_c1(g_y, code, *dropout, *args)
            else:
                self.k._conv_pool_bwd_drop(g_y, code, *dropout, *args)
        g_k, g_b = self._sum_parts(k, c1, gk_part, gb_part)
        return (g_x if input_grad else None), g_k, g_b

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
