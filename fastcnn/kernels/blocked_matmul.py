"""``a @ b`` on two cores while BLAS stays single-threaded: fixed pieces.

On the numba backend BLAS runs single-threaded (see ``fastcnn.runtime``), which
left the dense layers' matmuls on one core. Here the product is cut along its
largest dimension into ``BLOCKS`` pieces (rows of ``a``, columns of ``b``, or the
shared inner dimension, whose partial products are then added in piece order),
each its own BLAS call, and the pieces run on ``workers``' thread pool (NumPy
releases the GIL inside BLAS). The cut depends only on the shapes, never on the
thread count, so every output element comes from the same BLAS calls and the
same additions with 1 thread or with 8: results are bit-identical across thread
counts.
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
    """How ``[m, k] @ [k, n]`` is cut: ``('rows' | 'cols' | 'inner', [(start, stop), ...])``.

    The largest dimension is cut, so each piece keeps a well-shaped product and only
    the operand that is not cut is packed by every piece. ``inner`` cuts the shared
    dimension k: each piece is a full-size partial product and the partials are added
    in piece order. Small products stay one piece. Measured on 2 cores, one BLAS thread
    per piece (docs/benchmarks.md, "Dense layers"): SimpleConvNet's forward
    100x4320 @ 4320x100 ran at 135-141 GFLOP/s cut along k, 108-142 by rows;
    100x100 @ 100x4320 at 0.93 ms by rows, 0.77 by columns.
    """
    cut, size = max((m, "rows"), (n, "cols"), (k, "inner"), key=_largest)[::-1]
    if 2.0 * m * k * n < MIN_FLOPS or size < BLOCKS:
        return "rows", [(0, m)]
    step = -(-size // BLOCKS)
    return cut, [(s, min(s + step, size)) for s in range(0, size, step)]


def _largest(item: tuple[int, str]) -> tuple[int, int]:
    """Sort key: size first; ties go to rows, then columns, then the inner dimension."""
    size, cut = item
    return size, {"rows": 2, "cols": 1, "inner": 0}[cut]


def matmul(a: np.ndarray, b: np.ndarray, threads: int, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D arrays (transposed views welcome), split over ``threads`` threads,
    into ``out`` when given (C-contiguous, the product's shape and dtype)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    axis, blocks = plan(a.shape[0], a.shape[1], b.shape[1])
    # inner cut: piece 0 writes out, every later piece its own partial, added in piece order
    partials = [out] + [np.empty_like(out) for _ in blocks[1:]] if axis == "inner" else None

    def piece(i: int) -> None:
        s0, s1 = blocks[i]
        if axis == "rows":
            np.matmul(a[s0:s1], b, out=out[s0:s1])
        elif axis == "cols":
            np.matmul(a, b[:, s0:s1], out=out[:, s0:s1])
        else:
            np.matmul(a[:, s0:s1], b[s0:s1], out=partials[i])

    if threads < 2 or len(blocks) == 1:
        for i in range(len(blocks)):
            piece(i)
    else:
        workers.run([lambda i=i: piece(i) for i in range(len(blocks))])
    if partials is not None:
        for part in partials[1:]:
            out += part
    return out
