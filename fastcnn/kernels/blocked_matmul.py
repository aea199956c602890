"""``a @ b`` on every core while BLAS stays single-threaded: fixed row blocks.

On the numba backend BLAS runs single-threaded (see ``fastcnn.parallel``), which
left the dense layers' matmuls on one core. Here the rows of the product are cut
into ``BLOCKS`` pieces, each its own BLAS call writing into its slice of the
output, and the pieces run on a small thread pool (NumPy releases the GIL inside
BLAS). The cut depends only on the shapes, never on the thread count, so every
output element comes from the same BLAS call with 1 thread or with 8: results
are bit-identical across thread counts.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: row pieces per product (4: balanced for 1, 2 and 4 threads)
BLOCKS = 4
#: products below this many flops run as one call (handing work to a thread costs ~20 us)
MIN_FLOPS = 8_000_000

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One shared pool of ``BLOCKS - 1`` workers; the caller runs a piece itself."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=BLOCKS - 1, thread_name_prefix="fastcnn-mm")
        return _pool


def row_blocks(rows: int, flops: float) -> list[tuple[int, int]]:
    """The fixed ``[start, stop)`` row pieces of a product (one piece when it is small)."""
    if flops < MIN_FLOPS or rows < BLOCKS:
        return [(0, rows)]
    step = -(-rows // BLOCKS)
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


def matmul(a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """``a @ b`` for 2-D arrays (transposed views welcome), split over ``threads`` threads."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    blocks = row_blocks(a.shape[0], 2.0 * a.shape[0] * a.shape[1] * b.shape[1])

    def piece(block: tuple[int, int]) -> None:
        r0, r1 = block
        np.matmul(a[r0:r1], b, out=out[r0:r1])

    if threads < 2 or len(blocks) == 1:
        for block in blocks:
            piece(block)
        return out
    # workers take pieces round-robin by thread: piece i runs on worker i % threads
    per_thread = [blocks[t::threads] for t in range(min(threads, len(blocks)))]
    futures = [_executor().submit(lambda mine=mine: [piece(bl) for bl in mine]) for mine in per_thread[1:]]
    for block in per_thread[0]:
        piece(block)
    for future in futures:
        future.result()
    return out
