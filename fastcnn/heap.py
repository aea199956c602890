"""Keep freed activation buffers in the heap so the next training step reuses their pages.

glibc hands out every allocation above its mmap threshold as fresh pages and
returns them to the system on free, so each step of a CNN (which allocates its
multi-megabyte activations and gradients anew) pays one page fault per 4 KiB:
measured on SimpleConvNet at batch 100, 12.9 ms per step before, 10.1 ms with
freed memory kept for reuse. The peak memory does not grow: the heap holds at
most what one step used. Applied once per process (it is process-wide), on
every backend alike, when a model is built; a no-op outside glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations up to this size come from the heap (glibc's maximum on 64-bit)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept instead of returned to the system
TRIM_THRESHOLD = 512 * 1024 * 1024

_applied: bool | None = None


def retain_freed_buffers() -> bool:
    """Ask glibc to serve and keep buffers up to 32 MiB in the heap; True if it took effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
            _applied = False
    return _applied
