"""Process policy in one place: threads, the BLAS limit, OpenMP's wait policy, the allocator.

Importing fastcnn changes nothing in the process: no environment variable, no
allocator setting, no thread count. What fastcnn may change, and who decides
(docs/runtime.md):

- **Threads** (``set_num_threads`` / ``num_threads``): one count for every
  backend: numba's threads (capped by numba's pool, ``NUMBA_NUM_THREADS`` when
  numba starts; numba keeps the count per thread, so it is set in the calling
  thread and again in any thread a model runs in), the numba-aot cut count, and
  the worker pool of the dense products and AOT calls (``kernels.workers``:
  ``num_threads() - 1`` threads, the caller runs one piece). Default:
  ``NUMBA_NUM_THREADS`` if set, else every core this process may use. Results
  are the same bits for any count. ``kernels.blocked_matmul.BLOCKS`` is not a
  thread count: a dense product is always cut into the same pieces, whatever
  the count, so every output element comes from the same BLAS call (that is
  what keeps results bit-identical); the thread count only decides whether
  the pieces run one after another or side by side.
- **The BLAS limit** (``single_threaded_blas``): scoped, around the work of
  the backends marked ``SINGLE_THREADED_BLAS`` (the numba ones), always in
  force; it is not part of the policy switch.
- **The process policy** (``apply_policy``): ``OMP_WAIT_POLICY=PASSIVE`` (only
  where numba will run on GNU OpenMP: no TBB library here, or
  ``NUMBA_THREADING_LAYER=omp``; elsewhere it would only slow other OpenMP
  users of the process, such as PyTorch) and the glibc allocator setting.
  Process-wide, and the allocator setting cannot be undone, so it is the
  choice of whoever owns the process: training (``run_training``) and the
  ``fastcnn`` command apply it, once; a program
  embedding fastcnn calls ``set_policy(enabled=False)`` first (the command:
  ``--no-process-policy``) and nothing is applied. ``policy()`` says what was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from dataclasses import dataclass, replace

from .checks import is_int

# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

#: the module whose loading makes "the numba backend is loaded"
NUMBA_BACKEND_MODULE = "fastcnn.kernels.numba_cpu"

_threads: int | None = None  # set_num_threads' count; None: default_threads()


@functools.cache
def default_threads() -> int:
    """``NUMBA_NUM_THREADS`` if set (numba reads it too), else the cores this process may use."""
    value = os.environ.get("NUMBA_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """The thread count of every backend (``set_num_threads``; default ``default_threads()``)."""
    return default_threads() if _threads is None else _threads


def set_num_threads(n: int | None) -> None:
    """Run every backend on ``n`` threads (numba's count is capped by its pool; see the module);
    None: back to the default, and numba's own default in this thread.

    ValueError, naming the value, unless ``n`` is an int >= 1 or None.
    """
    global _threads
    if n is not None and (not is_int(n) or n < 1):
        raise ValueError(f"set_num_threads: the thread count must be an int >= 1 (or None), got {n!r}")
    _threads = None if n is None else int(n)
    if n is None and NUMBA_BACKEND_MODULE in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    _sync_numba_threads()


def numba_threads() -> int | None:
    """numba's thread count in this thread, or None while the numba backend is not loaded."""
    if NUMBA_BACKEND_MODULE not in sys.modules:
        return None
    return sys.modules["numba"].get_num_threads()


def _sync_numba_threads() -> None:
    """Give numba, in this thread, the count ``set_num_threads`` set (nothing if it was never called).

    numba keeps its count per thread: a thread starts with all of numba's pool. numba
    is only touched once the numba backend has loaded (and so chosen its threading layer).
    """
    if _threads is None or NUMBA_BACKEND_MODULE not in sys.modules:
        return
    numba = sys.modules["numba"]
    want = min(_threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != want:  # about 2 us
        numba.set_num_threads(want)


# --------------------------------------------------------------------------
# the BLAS limit
# --------------------------------------------------------------------------

# Who owns the cores: numba's workers or the BLAS library's, never both at once. On the
# numba backends the compiled kernels already split work across all cores. If OpenBLAS
# also starts its own threads for the matmuls in between (dense layers, stride > 1
# convs), the two pools oversubscribe the machine and spin against each other: measured
# on 2 cores, a 100x4320 @ 4320x100 sgemm took 73 ms with BLAS threads versus 1.0 ms
# single-threaded. Single-threaded BLAS also makes results independent of the BLAS
# thread count. Entering threadpoolctl costs about 12-22 us, so only the outermost entry
# does; nested ones (a model's step, then a strided conv inside it) count a depth. The
# depth is process-wide, not per thread: BLAS has one thread count per process, and a
# per-thread depth would let one thread's exit restore BLAS's threads while another
# thread's kernels still run. (threadpoolctl, imported on the first entry, sets
# KMP_DUPLICATE_LIB_OK=True itself when unset: its own choice, so that two OpenMP
# runtimes may share a process.)

_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limiter = None  # threadpoolctl's limiter while _blas_depth > 0
#: threadpoolctl.ThreadpoolController, made on first use (False: not installed). It limits the
#: BLAS libraries loaded by then: NumPy's, the one fastcnn calls; not one loaded later (PyTorch's)
_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it BLAS keeps its own threads
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


class _SingleThreadedBlas:
    """The context manager ``single_threaded_blas`` returns (its state is the module's)."""

    def __enter__(self):
        global _blas_depth, _blas_limiter
        _sync_numba_threads()
        with _blas_lock:
            if _blas_depth == 0:
                controller = _blas_controller()
                _blas_limiter = None if controller is None else controller.limit(limits=1, user_api="blas")
            _blas_depth += 1
        return self

    def __exit__(self, *exc_info) -> bool:
        global _blas_depth, _blas_limiter
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_limiter is not None:
                limiter, _blas_limiter = _blas_limiter, None
                limiter.restore_original_limits()
        return False


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """Context manager: BLAS on one thread inside (the outermost entry limits it, the last
    exit restores it; nested entries cost a lock), and numba on ``num_threads()`` in this thread."""
    return _SINGLE_THREADED_BLAS


def blas_depth() -> int:
    """How many ``single_threaded_blas`` blocks are open in the process (0: BLAS has its own threads)."""
    return _blas_depth


def _reset_in_child() -> None:
    """A forked child has none of its parent's threads: no block is open there."""
    global _blas_lock, _blas_depth, _blas_limiter
    _blas_lock, _blas_depth, _blas_limiter = threading.Lock(), 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)

# --------------------------------------------------------------------------
# the process policy: OpenMP's wait policy, the allocator
# --------------------------------------------------------------------------

#: what ``apply_policy`` sets ``OMP_WAIT_POLICY`` to, unless the environment has a value (it wins).
#: Only GNU OpenMP reads it, and only when its runtime starts: numba uses it only when it
#: falls back to its omp threading layer (it prefers TBB, see ``kernels.numba_safety``), and
#: setting it helps only before the first parallel kernel runs. With OpenMP's default active
#: waiting its idle threads spin between parallel regions and fight BLAS's threads for the
#: cores: on a 2-core machine a digits epoch went from 0.1 s to 3 s.
OMP_WAIT_POLICY = "PASSIVE"

# glibc hands out every allocation above its mmap threshold as fresh pages and returns them
# to the system on free, so each step of a CNN (which allocates its multi-megabyte
# activations and gradients anew) pays one page fault per 4 KiB: measured on SimpleConvNet
# at batch 100, 12.9 ms per step before, 10.1 ms with freed memory kept for reuse. The peak
# memory does not grow: the heap holds at most what one step used. A no-op outside glibc.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations up to this size come from the heap (glibc's maximum on 64-bit)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept instead of returned to the system
TRIM_THRESHOLD = 512 * 1024 * 1024


@dataclass(frozen=True)
class Policy:
    """What the process policy did (``policy()``).

    ``enabled``: ``apply_policy`` may apply it (``set_policy``). ``applied``: it ran with
    the policy on. ``omp_wait_policy``: the value fastcnn set ``OMP_WAIT_POLICY`` to, None
    if it set none (not applied, or the environment had a value, which wins).
    ``retain_freed_buffers``: glibc keeps freed buffers of up to 32 MiB (``mallopt`` took effect).
    """

    enabled: bool = True
    applied: bool = False
    omp_wait_policy: str | None = None
    retain_freed_buffers: bool = False


_policy = Policy()
_policy_lock = threading.Lock()


def policy() -> Policy:
    """What the process policy did so far (nothing until ``apply_policy`` runs with it on)."""
    return _policy


def set_policy(*, enabled: bool) -> Policy:
    """Turn the process policy on or off for every later ``apply_policy`` (training, the command).

    Turning it off after it was applied undoes nothing (the allocator setting cannot be
    undone); call it before training.
    """
    global _policy
    with _policy_lock:
        _policy = replace(_policy, enabled=bool(enabled))
        return _policy


def apply_policy() -> Policy:
    """Apply the process policy once (``OMP_WAIT_POLICY``, the allocator); a no-op when it is
    off or was applied. Returns ``policy()``."""
    global _policy
    with _policy_lock:
        if _policy.enabled and not _policy.applied:
            _policy = replace(_policy, applied=True, omp_wait_policy=_set_omp_wait_policy(),
                              retain_freed_buffers=_retain_freed_buffers())
        return _policy


TBB_LIBRARY = "libtbb.so.12"


def tbb_library_paths() -> list[str]:
    """Where the ``tbb`` wheel may have put ``libtbb.so.12``: its own file list, then ``<prefix>/lib``
    (numba's fork-safe threading layer needs it; ``kernels.numba_safety`` loads it)."""
    from importlib import metadata

    paths = []
    try:
        files = metadata.files("tbb") or []
        paths += [str(f.locate()) for f in files if f.name == TBB_LIBRARY]
    except metadata.PackageNotFoundError:
        pass
    paths += [os.path.join(prefix, "lib", TBB_LIBRARY) for prefix in (sys.prefix, sys.base_prefix)]
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


def numba_uses_openmp() -> bool:
    """Whether numba's parallel kernels will run on GNU OpenMP here: the layer asked for in
    ``NUMBA_THREADING_LAYER``, or (by default) when TBB's library cannot be loaded."""
    layer = os.environ.get("NUMBA_THREADING_LAYER", "default").strip().lower()
    if layer in ("tbb", "workqueue", "safe"):  # numba's "safe": TBB only
        return False
    if layer == "omp":
        return True
    # "default", "threadsafe", "forksafe": TBB first, where its library loads
    return not (sys.platform.startswith("linux") and tbb_library_paths())


def _set_omp_wait_policy() -> str | None:
    """``OMP_WAIT_POLICY`` where numba runs on OpenMP, unless the environment has a value;
    the value set, or None."""
    if "OMP_WAIT_POLICY" in os.environ or not numba_uses_openmp():
        return None
    os.environ["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
    return OMP_WAIT_POLICY


def _retain_freed_buffers() -> bool:
    """Ask glibc to serve and keep buffers up to 32 MiB in the heap; True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        return False
