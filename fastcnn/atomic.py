"""Atomic file writes that clean up after writers killed mid-write.

``atomic_write(path, write_fn)`` writes into ``.<name>.<16 hex>.tmp`` beside
``path`` and ``os.replace``-s it over ``path`` only once it is complete and
fsynced, so ``path`` is always either the old file or the new one, whole.

A writer killed with SIGKILL cannot remove its temp file, so every writer
holds an exclusive ``flock`` on its temp file until the replace. Before
writing, the next writer of the same target removes the temp files of that
target whose lock it can take: the kernel drops a lock when its holder dies,
so a lock that can be taken belongs to a dead writer. Temp files of live
writers (locked), of other targets, other names, directories and symlinks are
never touched. Without ``fcntl`` (Windows) there are no locks and no cleanup.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, so no safe way to tell a dead writer's temp file
    fcntl = None

_HEX = 16  # hex digits of the random part of a temp name
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def temp_pattern(path) -> re.Pattern:
    """Regex matching exactly the temp file names ``atomic_write`` uses for ``path``."""
    return re.compile(rf"\.{re.escape(Path(path).name)}\.[0-9a-f]{{{_HEX}}}\.tmp")


def remove_stale_temps(path) -> list[Path]:
    """Remove temp files of ``path`` left by dead writers; return the removed paths."""
    if fcntl is None:
        return []
    path = Path(path)
    folder = path.parent
    pattern = temp_pattern(path)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                if _remove_if_unlocked(Path(entry.path)):
                    removed.append(Path(entry.path))
    return removed


def _remove_if_unlocked(tmp: Path) -> bool:
    """Unlink ``tmp`` if it is a regular file whose flock we can take (its writer is dead)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | _OPEN_FLAGS
    fd = os.open(tmp, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        now = os.stat(tmp, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False  # the name was replaced meanwhile: not the file we locked
        os.unlink(tmp)
        return True
    finally:
        os.close(fd)


def _create_locked_temp(path: Path) -> tuple[int, Path]:
    """A new temp file beside ``path``, opened for writing and flock-ed."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(_HEX // 2)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner briefly holds it
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)  # a cleaner took the lock first and removed the file: try a new name
    raise FileExistsError(f"cannot create a temp file for {path}: 100 names taken")


def atomic_write(path, write_fn: Callable, *, mode: int | None = None) -> Path:
    """Write ``path`` via ``write_fn(binary_file)``: temp file, flock, fsync, ``os.replace``.

    Creates missing folders and first removes stale temp files of ``path``.
    The new file gets ``mode`` (default: 0o666 minus the umask, like ``open``).
    On any error the temp file is removed, ``path`` is left as it was, and the
    error is re-raised unchanged (callers add the file name to the message).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = _create_locked_temp(path)
    f = os.fdopen(fd, "wb")  # stays open, and locked, until tmp is renamed
    try:
        write_fn(f)
        f.flush()
        os.fsync(fd)
        file_mode = 0o666 & ~_umask() if mode is None else mode
        if hasattr(os, "fchmod"):
            os.fchmod(fd, file_mode)
        else:
            os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    f.close()
    _fsync_folder(path.parent)
    return path


def named_error(exc: OSError, message: str) -> OSError:
    """``exc`` as a new OSError of the same errno (and subclass): ``<message>: <reason>``."""
    if exc.errno is None:
        return OSError(f"{message}: {exc}")
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        reason += f" ({exc.filename})"
    return OSError(exc.errno, f"{message}: {reason}")


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the OS allows fsync on a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask
