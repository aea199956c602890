"""``a @ b`` on two cores while BLAS stays single-threaded: fixed pieces.

On the numba backend BLAS runs single-threaded (see ``fastcnn.runtime``), which
left the dense layers' matmuls on one core. Here the rows of the product are cut
(or the columns) into ``BLOCKS`` pieces, each its own BLAS call writing into its
slice of the output, and the pieces run on ``workers``' thread pool (NumPy releases
the GIL inside BLAS). The cut depends only on the shapes, never on the thread
count, so every output element comes from the same BLAS call with 1 thread or
with 8: results are bit-identical across thread counts.
"""

from __future__ import annotations

import numpy as np

from . import workers

#: pieces per product: a fixed cut, not a thread count (``fastcnn.runtime`` explains why;
#: 4 pieces measured slower than 2 on 2 cores, because every piece packs its own copy
#: of the operand that is not cut)
BLOCKS = 2
#: products below this many flops run as one call (handing work to a thread costs ~20 us)
MIN_FLOPS = 8_000_000


def plan(m: int, k: int, n: int) -> tuple[str, list[tuple[int, int]]]:
    """How ``[m, k] @ [k, n]`` is cut: ``('rows' | 'cols', [(start, stop), ...])``.

    The larger operand is cut (rows of ``a`` or columns of ``b``), so only the
    smaller one is packed by every piece; small products stay one piece.
    Measured on 2 cores: 100x100 @ 100x4320 took 0.93 ms cut by rows, 0.77 by columns.
    """
    cut_cols = k * n > m * k
    size = n if cut_cols else m
    if 2.0 * m * k * n < MIN_FLOPS or size < BLOCKS:
        return "rows", [(0, m)]
    step = -(-size // BLOCKS)
    return ("cols" if cut_cols else "rows"), [(s, min(s + step, size)) for s in range(0, size, step)]


def matmul(a: np.ndarray, b: np.ndarray, threads: int, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D arrays (transposed views welcome), split over ``threads`` threads,
    into ``out`` when given (C-contiguous, the product's shape and dtype)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    axis, blocks = plan(a.shape[0], a.shape[1], b.shape[1])

    def piece(block: tuple[int, int]) -> None:
        s0, s1 = block
        if axis == "rows":
            np.matmul(a[s0:s1], b, out=out[s0:s1])
        else:
            np.matmul(a, b[:, s0:s1], out=out[:, s0:s1])

    if threads < 2 or len(blocks) == 1:
        for block in blocks:
            piece(block)
        return out
    workers.run([lambda block=block: piece(block) for block in blocks])
    return out
