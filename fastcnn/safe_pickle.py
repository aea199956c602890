"""Read pickles of NumPy arrays without running arbitrary pickle code.

A pickle is a small program: every global it names is imported and may be
called. ``load_arrays`` runs it with a ``pickle.Unpickler`` whose
``find_class`` hands out only the handful of callables that rebuild NumPy
arrays, dtypes and scalars (what NumPy's own ``__reduce__`` writes under
protocols 0-5, under both the NumPy 1 ``numpy.core`` and the NumPy 2
``numpy._core`` module names) and refuses every other global, before it is
imported, with an ``UnsafePickleError`` naming the file and the global.
Dicts, lists, tuples, strings and numbers need no global at all.

What each protocol references (NumPy 2.x, checked with ``pickletools``):
protocols 0-2 ``numpy.dtype``, ``numpy.ndarray``,
``numpy._core.multiarray._reconstruct`` / ``scalar`` and ``_codecs.encode``
(bytes written as latin-1 text); 3-4 the same without ``_codecs``; 5 adds
``numpy._core.numeric._frombuffer`` (in-band ``BYTEARRAY8`` buffers).
Python 2 pickles (the ``numpy.core`` names, byte strings) load with
``encoding='latin1'``, which NumPy's ``__setstate__`` expects.
"""

from __future__ import annotations

import codecs
import collections
import pickle
from pathlib import Path

import numpy as np

try:  # NumPy 2: the real module; importing numpy.core there warns
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy 1
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle names a global outside the allow-list, or holds something other than arrays."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocols 0-2 use it (str -> bytes), latin-1 only."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"_codecs.encode is allowed only for latin-1 text, got encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer

#: ``module.name`` of every global a pickle may reference
ALLOWED_GLOBALS = tuple(sorted(f"{m}.{n}" for m, n in _ALLOWED))


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``ALLOWED_GLOBALS``."""

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.source}: refused global {module}.{name}: only NumPy arrays, dicts, lists and "
                f"numbers are read (allowed globals: {', '.join(ALLOWED_GLOBALS)})"
            )
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused a persistent id ({pid!r}): not a plain array pickle")


def load_arrays(path) -> object:
    """Unpickle ``path`` with ``ArrayUnpickler``; every failure names ``path``.

    Returns whatever the pickle holds (built only from allowed globals):
    callers check its structure.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    try:
        with open(path, "rb") as f:
            return ArrayUnpickler(f, str(path)).load()
    except UnsafePickleError as exc:
        if str(path) in str(exc):
            raise
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path} is not a readable pickle of NumPy arrays: {reason}") from None
