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
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import warnings
from importlib import metadata

from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher

TBB_LIBRARY = "libtbb.so.12"

_tbb: ctypes.CDLL | None = None
_warned: set[str] = set()


def tbb_library_paths() -> list[str]:
    """Where the ``tbb`` wheel may have put ``libtbb.so.12``: its own file list, then ``<prefix>/lib``."""
    paths = []
    try:
        files = metadata.files("tbb") or []
        paths += [str(f.locate()) for f in files if f.name == TBB_LIBRARY]
    except metadata.PackageNotFoundError:
        pass
    paths += [os.path.join(prefix, "lib", TBB_LIBRARY) for prefix in (sys.prefix, sys.base_prefix)]
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


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


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


class GuardedCache(FunctionCache):
    """numba's on-disk function cache, but a damaged entry is discarded and recompiled."""

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry: compile anew
            removed = self.discard()
            _warn_once(
                "load",
                f"fastcnn: discarded a damaged compiled-kernel cache entry of "
                f"{self._py_func.__name__} ({type(exc).__name__}: {exc}; removed {len(removed)} "
                f"file(s) in {self._cache_path}); fastcnn's kernels recompile (first-run time)",
            )
            return None

    def save_overload(self, sig, data):
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
