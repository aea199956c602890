"""What keeps the JIT backend usable after a fork or a damaged cache.

**Fork-safe threads.** numba runs parallel kernels on the first threading
layer it can load, in the order tbb, omp, workqueue. GNU OpenMP (omp) is not
fork-safe: a child forked after a parallel kernel ran is terminated ("fork()
called from a process already using GNU OpenMP"). TBB is, and fastcnn depends
on the ``tbb`` wheel; but pip puts ``libtbb.so.12`` in the environment's
``lib/`` folder, which the loader does not search, so numba would fall back to
omp. ``load_tbb`` loads that library once by its path, so numba's TBB layer
finds it when its pool starts. Nothing else changes: a layer chosen with
``NUMBA_THREADING_LAYER`` still wins. Cost against omp: docs/performance.md.

**A cache that survives damage.** numba keeps compiled kernels in ``.nbi``
(index) and ``.nbc`` (code) pickle files. A truncated or garbled one (a full
disk, a killed copy, a bad sync) makes numba's loader raise
``UnpicklingError`` on every later run. ``guard_caches`` gives fastcnn's own
kernels (and no other numba function in the process) a cache that discards a
damaged entry, warns once, and compiles the kernel anew; a cache that cannot
be written only costs a compile next time.

**A first run that says what it is doing.** The same cache sees every miss
before numba compiles: ``COMPILE_NOTICE`` prints one line on stderr before the
first compile ("compiling fastcnn's kernels for this CPU, first use only ...")
and, while compiling goes on, a progress line every ``PROGRESS_EVERY`` seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading
import time
import warnings

from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher

from ..runtime import tbb_library_paths

_tbb: ctypes.CDLL | None = None
_warned: set[str] = set()


def load_tbb() -> bool:
    """Load TBB's library so numba's TBB threading layer can start; True if it is loaded."""
    global _tbb
    if _tbb is not None:
        return True
    if not sys.platform.startswith("linux"):
        return False
    for path in tbb_library_paths():
        try:
            _tbb = ctypes.CDLL(path)
            return True
        except OSError:
            continue
    return False


#: seconds between progress lines while kernels compile
PROGRESS_EVERY = 10.0
#: a compile that has not ended after this long failed (numba raised): stop the progress lines
STALL_SECONDS = 300.0
#: what a whole first run compiles, measured (docs/performance.md): said in the first line
FIRST_RUN_ESTIMATE = "up to a minute"


class CompileNotice:
    """Says on ``out`` (stderr) that kernels compile: once before the first, then a line every
    ``every`` seconds while any compile is under way (``tick``, called by a daemon thread)."""

    def __init__(self, out=None, clock=time.monotonic, every: float | None = None):
        self._out, self._clock, self._every = out, clock, every
        #: False: say nothing (a build that reports on its own, e.g. numba-aot's)
        self.enabled = True
        self._lock = threading.Lock()
        self._active = 0
        self.compiled = 0
        self._started: float | None = None
        self._last = self._event = 0.0
        self._thread: threading.Thread | None = None

    def _say(self, text: str) -> None:
        if not self.enabled:
            return
        out = self._out if self._out is not None else sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed stderr: compile on in silence
            print(f"fastcnn: {text}", file=out, flush=True)

    def begin(self, name: str, cache_path: str, thread: bool = True) -> None:
        """A kernel is about to compile (numba found no cache entry for it)."""
        with self._lock:
            self._active += 1
            self._event = self._clock()
            if self._started is None:
                self._started = self._last = self._clock()
                self._say(f"compiling fastcnn's kernels for this CPU, first use only ({FIRST_RUN_ESTIMATE}; "
                          f"cached in {cache_path})")
            if thread and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="fastcnn-compile-notice", daemon=True)
                self._thread.start()

    def end(self) -> None:
        """A kernel finished compiling."""
        with self._lock:
            self._active = max(0, self._active - 1)
            self.compiled += 1
            self._event = self._clock()

    def tick(self) -> bool:
        """Print a progress line if a compile is under way and ``every`` seconds passed; whether
        compiling is still under way."""
        every = PROGRESS_EVERY if self._every is None else self._every
        with self._lock:
            now = self._clock()
            if self._active == 0 or now - self._event > STALL_SECONDS:
                return False
            if now - self._last >= every:
                self._last = now
                done, seconds = self.compiled, now - self._started
                self._say(f"still compiling kernels ({done} done, {seconds:.0f} s so far)")
            return True

    def _run(self) -> None:
        every = PROGRESS_EVERY if self._every is None else self._every
        while True:
            time.sleep(min(every, 1.0))
            if not self.tick():
                return


    def _after_fork_in_child(self) -> None:
        """The child has no notice thread, and the lock may have been held by another thread."""
        self._lock, self._thread = threading.Lock(), None


COMPILE_NOTICE = CompileNotice()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=COMPILE_NOTICE._after_fork_in_child)


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


class GuardedCache(FunctionCache):
    """numba's on-disk function cache, but a damaged entry is discarded and recompiled."""

    def load_overload(self, sig, target_context):
        try:
            found = super().load_overload(sig, target_context)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry: compile anew
            removed = self.discard()
            _warn_once(
                "load",
                f"fastcnn: discarded a damaged compiled-kernel cache entry of "
                f"{self._py_func.__name__} ({type(exc).__name__}: {exc}; removed {len(removed)} "
                f"file(s) in {self._cache_path}); fastcnn's kernels recompile (first-run time)",
            )
            found = None
        if found is None and self._enabled:  # a miss: numba compiles this kernel now
            COMPILE_NOTICE.begin(self._py_func.__name__, self._cache_path)
            self._compiling = True
        return found

    def save_overload(self, sig, data):
        if getattr(self, "_compiling", False):
            self._compiling = False
            COMPILE_NOTICE.end()
        try:
            super().save_overload(sig, data)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written costs a compile
            _warn_once(
                "save",
                f"fastcnn: cannot write the compiled-kernel cache in {self._cache_path} "
                f"({type(exc).__name__}: {exc}); the kernels will compile again in the next process",
            )

    def discard(self) -> list[str]:
        """Delete this function's index and code files; the names removed."""
        base = self._cache_file._index_name[: -len(".nbi")]
        removed = []
        for path in glob.glob(os.path.join(glob.escape(self._cache_path), glob.escape(base) + ".*")):
            if path.endswith((".nbi", ".nbc")):
                try:
                    os.remove(path)
                    removed.append(path)
                except OSError:
                    pass
        return removed


def guard_caches(package: str) -> int:
    """Give every cached dispatcher defined in the loaded modules of ``package`` a
    ``GuardedCache`` (callees too: numba loads them from their own cache); how many."""
    count = 0
    modules = [m for name, m in list(sys.modules.items()) if name.startswith(package + ".")]
    for module in modules:
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and type(getattr(obj, "_cache", None)) is FunctionCache:
                obj._cache = GuardedCache(obj.py_func)
                count += 1
    return count
