"""The numba kernels: a map of which compiled kernel serves which case, and their namespace.

DISPATCH TABLE (the choice is ``NumbaHost``'s, in ``numba_host.py``; any kernel
size kh x kw; "wide" is ``NumbaHost.wide``: the register blocks for 32 vector
registers (AVX-512) if True, for 16 (AVX2) if False; both run on any CPU,
the default is this CPU's, ``_WIDE``; they differ in the backward's g_k blocks only,
which group some sums differently: on some CPUs g_k of several input channels differs
in the last bits)

  contract function     case                              kernel -> inner loops (module)
  --------------------  --------------------------------  ------------------------------------------------
  conv2d_forward        stride > 1 (either axis), or a   _ext_regions + sgemm + bias (elementwise);
                          small map with many taps        the sgemm in fixed pieces (blocked_matmul)
                          (numba_host.gemm_conv: <= 256
                          pixels out, >= 128 taps)
                        stride 1, 1 input channel         _conv_fwd_blocked(five=True) -> _corr5:
                                                            5 taps x 5 out channels, _mac5x5 (conv_fwd)
                        stride 1, >1 in, ychn % 3 == 0    _conv_fwd_blocked(five=False) -> _corr4x3:
                          or ychn > 8                       4 taps x 3 out channels, _axpy4x3; wide: x 6,
                                                            _axpy4x6, while 6 are left (conv_fwd)
                        stride 1, >1 in, otherwise        _conv_fwd -> _corr: 4 taps x 2 out channels
                                                            (_axpy4x2; odd last channel _axpy8) (conv_fwd)
  conv2d_backward       the same (gemm_conv)              _ext_regions, sgemms, _undo_ext_regions,
                                                            _sum_batch (elementwise, simd)
                        stride 1, 1 input channel         _conv_bwd_c1(wide): g_k _dot5x3 if wide (out
                                                            channels padded to 15) else _dot5x2 (to 10);
                                                            g_x _mac5x5 GEMM + col2im gather (conv_bwd)
                        stride 1, >1 input channels       _conv_bwd(wide): g_k _corr_grad -> _dot4x6 if
                                                            wide else _corr_grad3x3 -> _dot3x3; g_x
                                                            _corr4x3 on the flipped kernel (conv_bwd)
                        then, stride 1                    _sum_parts: per-image g_k / g_b partials, in
                                                            image order, into k's layout (conv_bwd)
  conv_pool_forward     FUSED (conv_pool_fusable; the     _conv_pool_fwd (fused): per image,
  (models: the steps      models' ConvPoolStep):
  ConvPoolStep)           a stride-1 conv (any kernel,      _conv_image (the prange body of the forward
                          padding, channels, batch), its    rows above: _corr5 / _corr4x3 / _corr, the same
                          activation relu or none, then     choice) into a frame; _from_frame to an NHWC
                          the pooling layer right after     scratch image, _relu_row; _max_image
                          it: max (window <= 128 elements)  (_tap_argmax, as _max_bwd; 2x2 stride 2:
                                                            _max2_frame on the planar frame, one
                                                            transpose to NHWC) or _avg_image
                          or avg, any window and stride,    (as _avg_fwd): writes the pooled y and a
                          no pooling padding; and a         uint8 code (choice / ReLU mask); then a
                          dropout / noise layer right       dropout's or noise's draw on each image's
                          after it (the pooling without     y as written (numba_random._apply_draw):
                          an activation)                    _conv_pool_fwd_draw
  conv_pool_backward    the same, 1 input channel         _conv_pool_bwd_c1: _pool_grad (the conv
                                                            output's gradient frame from the pooled
                                                            gradient and the code), _bwd_c1_image
                                                            (the body of _conv_bwd_c1); after a
                                                            dropout: _conv_pool_bwd_drop_c1, its
                                                            backward (_kept_grad) first
                        the same, >1 input channels       _conv_pool_bwd (_drop): _pool_grad,
                                                            _bwd_image (the body of _conv_bwd); then
                                                            _sum_parts (conv_bwd)
  (not fused)           gemm_conv convs, sigmoid / tanh   layer by layer: the conv and pooling rows
                          convs, padded pooling
  max_pool_*            any window, stride                _max_fwd / _max_bwd: flat passes _tap_max /
                                                            _tap_argmax (pool)
  avg_pool_*            any window, stride                _avg_fwd / _avg_bwd (pool)
  ext_regions, undo_*   im2col / col2im                   _ext_regions / _undo_ext_regions (elementwise)
  relu_*, adam_update   one fused pass                    _relu, _relu_backward, _adam (elementwise)
  (host helpers)        a stride-1 conv's weights in the  _tap_offsets, _tap_weights (conv_fwd);
                          kernels' layouts                  _flipped_weights, _c1_weights (conv_bwd)

Modules (``fastcnn/kernels/numba_*.py``, the only ones that import numba):
``numba_simd`` (the ``_transpose8`` intrinsic, NHWC <-> planar frame copies,
1-D passes, ``_sum_batch``), ``numba_blocks`` (register blocks: axpy / mac /
dot), ``numba_conv_fwd``, ``numba_conv_bwd``, ``numba_pool``,
``numba_elementwise`` (ReLU, Adam, im2col), ``numba_fused`` (conv + activation +
pooling in one pass, on the per-image bodies of the conv modules, with a dropout's or
noise's draw from ``numba_random``'s span helpers), ``numba_cache``
(one on-disk cache stamp over all of them). The kernels are plain ``@njit(parallel=True,
cache=True)`` loop nests over C-contiguous arrays, ``prange`` over images (or
image rows, or elements); every thread owns its outputs and cross-image sums
run in a fixed order, so results do not depend on the thread count. They
assume valid input (``fastcnn.kernels`` checks it).

This module holds no kernel: it re-exports the ones ``NumbaHost`` calls under
their names (the namespace the ``numba`` backend hands to ``NumbaHost``, and
what ``aot_build`` compiles: ``aot.KERNELS``), and ``_WIDE``, the default variant.
"""

from __future__ import annotations

from .numba_conv_bwd import _c1_weights, _conv_bwd, _conv_bwd_c1, _flipped_weights, _sum_parts
from .numba_conv_fwd import _conv_fwd, _conv_fwd_blocked, _tap_offsets, _tap_weights
from .numba_elementwise import _adam, _ext_regions, _relu, _relu_backward, _undo_ext_regions
from .numba_fused import (
    _conv_pool_bwd,
    _conv_pool_bwd_c1,
    _conv_pool_bwd_drop,
    _conv_pool_bwd_drop_c1,
    _conv_pool_fwd,
    _conv_pool_fwd_draw,
)
from .numba_pool import _avg_bwd, _avg_fwd, _max_bwd, _max_fwd
from .numba_simd import _sum_batch, num_threads

__all__ = [
    "_WIDE", "_adam", "_avg_bwd", "_avg_fwd", "_c1_weights", "_conv_bwd", "_conv_bwd_c1", "_conv_fwd",
    "_conv_fwd_blocked", "_flipped_weights", "_sum_parts", "_tap_weights",
    "_conv_pool_bwd", "_conv_pool_bwd_c1", "_conv_pool_bwd_drop", "_conv_pool_bwd_drop_c1", "_conv_pool_fwd",
    "_conv_pool_fwd_draw",
    "_ext_regions", "_max_bwd", "_max_fwd", "_relu", "_relu_backward", "_sum_batch", "_tap_offsets",
    "_undo_ext_regions", "num_threads",
]


def _host_has_avx512() -> bool:
    """True if numba compiles for AVX-512 (32 vector registers), False for AVX2 and older (16):
    this CPU's features, or ``NUMBA_CPU_FEATURES`` where set (code built for other machines, or
    "generic"): the blocks follow the instructions the code gets, not the CPU it is built on."""
    from llvmlite import binding
    from numba.core import config

    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES.replace(" ", "").split(",")
    try:
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:  # feature detection unavailable: assume the smaller register file
        return False


# The default variant for this CPU (what the numba backend passes as NumbaHost's ``wide``,
# and what aot_build records). With 16 vector registers (AVX2) the wide g_k blocks spill
# about half their accumulators to the stack (measured 2x slower); with 32 the narrow
# ones leave registers unused. Kernels take the choice as an argument, never read this.
_WIDE = _host_has_avx512()
