"""The ``numba-aot`` backend's dropout and noise: ``numba_random``'s kernels as built ahead of
time (``aot.KERNELS``), called through the same ``masks.KernelMasks`` as the ``numba``
backend's, so the two give the same bits. Loads no numba: only the built extension module.
"""

from __future__ import annotations

from .masks import KernelMasks
from .numba_aot import _KERNELS

_HOST = KernelMasks(_KERNELS._dropout_fwd, _KERNELS._dropout_bwd, _KERNELS._add_noise,
                    _KERNELS._relu_draw_fwd, _KERNELS._relu_drop_bwd)


#: the contract functions (``masks.MASK_FUNCTIONS``), and the fused ones (``masks.FUSED_MASK_FUNCTIONS``)
dropout_forward = _HOST.dropout_forward
dropout_backward = _HOST.dropout_backward
add_noise = _HOST.add_noise
relu_draw_forward = _HOST.relu_draw_forward
relu_drop_backward = _HOST.relu_drop_backward
