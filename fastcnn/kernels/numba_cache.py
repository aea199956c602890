"""One on-disk cache stamp for every numba kernel module.

numba's cache (``cache=True``) marks a compiled function stale when the source
file of that function changes, and only that file: a kernel compiled from
``numba_conv_fwd.py`` has ``numba_simd.py``'s helpers built into its machine
code, yet an edit of ``numba_simd.py`` alone would leave it loading the old code.
So the kernels' cache entries are stamped with a digest of ALL the kernel
modules (``KERNEL_SOURCES``): an edit of any of them recompiles every kernel, as
when they were one file. The cache files keep numba's own places and names; only
the stamp changes. ``share_cache_stamp()`` runs at the top of each kernel module,
before its first ``@njit(cache=True)``.
"""

from __future__ import annotations

import functools
import hashlib
import os

from numba.core import caching

#: the files the compiled kernels are made of (``numba_kernels.py``, the map, only re-exports them)
KERNEL_SOURCES = (
    "numba_simd.py",
    "numba_blocks.py",
    "numba_conv_fwd.py",
    "numba_conv_bwd.py",
    "numba_pool.py",
    "numba_elementwise.py",
    "numba_fused.py",
    "numba_random.py",
)
_HERE = os.path.dirname(os.path.abspath(__file__))


def sources_stamp() -> str:
    """SHA-256 over the kernel modules, in ``KERNEL_SOURCES`` order (read again when one changes)."""
    stats = tuple((name, st.st_mtime_ns, st.st_size)
                  for name in KERNEL_SOURCES for st in [os.stat(os.path.join(_HERE, name))])
    return _digest(stats)


@functools.lru_cache(maxsize=4)
def _digest(stats) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stats:
        with open(os.path.join(_HERE, name), "rb") as fh:
            digest.update(name.encode() + b"\0" + fh.read())
    return digest.hexdigest()


class KernelModulesLocator(caching._CacheLocator):
    """numba's own locator for a function of a kernel module, with the shared stamp."""

    def __init__(self, inner):
        self._inner = inner
        self._py_file = inner._py_file  # read by numba's "cannot cache" warning

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return sources_stamp()

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        path = os.path.abspath(py_file)
        if os.path.dirname(path) != _HERE or os.path.basename(path) not in KERNEL_SOURCES:
            return None  # any other function: numba's next locator
        for other in caching.CacheImpl._locator_classes:
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


def share_cache_stamp() -> None:
    """Put ``KernelModulesLocator`` first in numba's locators (once); other functions are unaffected.

    (``NUMBA_CACHE_LOCATOR_CLASSES``, if set, replaces numba's list and with it this locator.)
    """
    if KernelModulesLocator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, KernelModulesLocator)
