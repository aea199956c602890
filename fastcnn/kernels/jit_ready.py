"""Which numba kernels are compiled and in the cache: the ready file beside numba's cache.

A cold ``numba`` backend runs the prebuilt (numba-aot) kernels while a child process
compiles numba's parallel ones (``fastcnn.kernels.tiered``). The child records each
kernel build it has put in the cache here, as ``"<kernel>:<code>"`` (code: ``f4``,
``f8``, or ``-`` for a kernel without float arrays). The record belongs to one set of
kernel sources, one CPU and one numba version; a record for others counts as empty.
It is rewritten whole and atomically, under a lock, so a killed writer leaves either
the old record or the new one, and two writers do not lose each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from . import aot

READY_FILE = "fastcnn-jit-ready.json"
LOCK_FILE = ".fastcnn-jit-ready.lock"


def key(kernel: str, code: str | None) -> str:
    """The record's name of one build: ``_conv_fwd:f4``, ``_tap_offsets:-``."""
    return f"{kernel}:{code or '-'}"


def dtype_set(code: str) -> list[str]:
    """Every build of ``aot.KERNELS`` one float code needs (its float builds, and the float-free ones)."""
    return [key(kernel, c) for kernel, c in aot.builds() if c in (code, None)]


def split_key(name: str) -> tuple[str, str | None]:
    """``key``'s inverse; ValueError for a name that is not a build of ``aot.KERNELS``."""
    kernel, _, code = name.partition(":")
    code = None if code == "-" else code
    if (kernel, code) not in aot.builds():
        raise ValueError(f"{name!r} is not a kernel build of fastcnn (kernel:f4, kernel:f8 or kernel:-)")
    return kernel, code


def identity() -> dict:
    """What the record belongs to: the kernel sources, this CPU, numba's version."""
    import numba
    from llvmlite import binding

    from .numba_cache import sources_stamp

    return {"sources": sources_stamp(), "cpu": binding.get_host_cpu_name(), "numba": numba.__version__}


def read(folder: Path, ident: dict) -> set[str]:
    """The builds recorded ready in ``folder`` for ``ident`` (empty when none, or unreadable)."""
    try:
        data = json.loads((folder / READY_FILE).read_text())
        if data.get("identity") != ident:
            return set()
        return {str(name) for name in data.get("ready", [])}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()


def stamp(folder: Path) -> float | None:
    """The record's modification time (None if there is none): a cheap test for news."""
    try:
        return os.stat(folder / READY_FILE).st_mtime_ns
    except OSError:
        return None


@contextlib.contextmanager
def locked(folder: Path, wait: bool = True):
    """The record's lock, held for the block (one writer, or one compiling child, at a time).
    ``wait=False``: BlockingIOError at once if another process holds it (a child compiling)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def add(folder: Path, ident: dict, names) -> set[str]:
    """Record ``names`` ready (the caller holds ``locked``); return the whole record."""
    ready = read(folder, ident) | set(names)
    tmp = folder / f"{READY_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"identity": ident, "ready": sorted(ready)}, indent=1))
    os.replace(tmp, folder / READY_FILE)
    return ready
