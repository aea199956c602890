"""One small pool of worker threads, for work that releases the GIL: BLAS calls, AOT kernels.

The dense layers' products (``blocked_matmul``) and the ``numba-aot`` kernels
(``aot``) cut their work into fixed pieces and run them here: the caller runs
the first piece itself, pool threads the others. The pool is made once (its
threads start on first use) and made anew in a forked child, which has none of
the parent's threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                       thread_name_prefix="fastcnn-worker")
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's worker threads: start a new pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def run(pieces: list[Callable[[], None]]) -> None:
    """Run every piece, the first on this thread; return when all are done, re-raising the first error.

    Every piece is waited for even if one fails: they write into shared outputs.
    """
    if len(pieces) == 1:
        pieces[0]()
        return
    futures = [_executor().submit(piece) for piece in pieces[1:]]
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
