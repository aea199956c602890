"""One small pool of worker threads, for work that releases the GIL: BLAS calls, AOT kernels.

The dense layers' products (``blocked_matmul``) and the ``numba-aot`` kernels
(``aot``) cut their work into fixed pieces and run them here: the caller runs
the first piece itself, pool threads the others. The pool has
``fastcnn.runtime.num_threads() - 1`` threads (they start on first use); it is
made anew when that count changes, and in a forked child, which has none of the
parent's threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .. import runtime

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _submit(pieces: list[Callable[[], None]]) -> list[Future]:
    """Hand ``pieces`` to the pool, of ``runtime.num_threads() - 1`` threads (at least one)."""
    global _pool, _pool_size
    size = max(1, runtime.num_threads() - 1)
    with _pool_lock:  # held while submitting: a resize never shuts the pool down in between
        if _pool is None or _pool_size != size:
            if _pool is not None:  # pieces already handed to it still run; their callers wait for them
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fastcnn-worker")
            _pool_size = size
        return [_pool.submit(piece) for piece in pieces]


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's worker threads: start a new pool there."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def run(pieces: list[Callable[[], None]]) -> None:
    """Run every piece, the first on this thread; return when all are done, re-raising the first error.

    Every piece is waited for even if one fails: they write into shared outputs.
    """
    if len(pieces) == 1:
        pieces[0]()
        return
    futures = _submit(pieces[1:])
    error = None
    try:
        pieces[0]()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, once the others are done
        error = exc
    for future in futures:
        try:
            future.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error
