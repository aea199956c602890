"""File faults: writers killed mid-save, full disks, damaged image caches (fastcnn.atomic)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from model_helpers import tiny_dataset
from test_datasets import make_flowers

import fastcnn.atomic as atomic
import fastcnn.params_io as pio
from fastcnn import CnnModel
from fastcnn.datasets import FlowersDataset
from fastcnn.datasets import images as image_io

NET = [["conv", {"ksize": 3, "chn": 3}], 5]
TESTS = Path(__file__).resolve().parent
HEX = "0123456789abcdef"

# The child saves with np.savez replaced by a writer that writes half a zip,
# says "ready" (its temp file now exists and is locked) and blocks on stdin
# until the test kills it: no sleeps, the kill lands at a known point.
CHILD = """
import sys
import numpy as np
import fastcnn.params_io as pio
from fastcnn import CnnModel
from model_helpers import tiny_dataset

def blocking_savez(f, **arrays):
    f.write(b"PK half a zip")
    f.flush()
    print("ready", flush=True)
    sys.stdin.read()

np.savez = blocking_savez
model = CnnModel("io", tiny_dataset(), None, [["conv", {"ksize": 3, "chn": 3}], 5], backend="numpy")
pio.save_params(model, sys.argv[1])
"""


def _model(net=NET, seed=0):
    return CnnModel("io", tiny_dataset(), None, net, backend="numpy", seed=seed)


def temps_of(path: Path) -> list[Path]:
    """The temp files ``atomic_write`` would use for ``path``, as they are on disk."""
    pattern = atomic.temp_pattern(path)
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


@contextlib.contextmanager
def writer_in_child(target: Path):
    """A child process blocked inside ``save_params(target)``; yields (process, its temp file)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    before = set(temps_of(target)) if target.parent.exists() else set()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # returns "" if the child died first
        if line != "ready\n":
            proc.kill()
            raise AssertionError(f"child did not start its save: {line!r} {proc.communicate()[1]}")
        (tmp,) = set(temps_of(target)) - before
        yield proc, tmp
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def kill(proc) -> None:
    """SIGKILL ``proc`` and reap it: once waited for, the kernel has released its locks."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def assert_loads_like(path: Path, model) -> None:
    fresh = _model(seed=99)
    fresh.load_params(path)
    for key, value in model.params.items():
        np.testing.assert_array_equal(fresh.params[key], value)


# -- writers killed mid-save --------------------------------------------------


def test_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    """Each save removes the temp of the one killed before it: kills never pile up files."""
    target = tmp_path / "p.npz"
    for _ in range(3):
        with writer_in_child(target) as (proc, tmp):
            assert tmp.read_bytes() == b"PK half a zip"
            kill(proc)
        assert temps_of(target) == [tmp]  # SIGKILL gave it no chance to clean up; older ones are gone
    assert not target.exists()
    model = _model(seed=1)
    pio.save_params(model, target)
    assert temps_of(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]
    assert_loads_like(target, model)


def test_save_spares_the_temp_file_of_a_live_writer(tmp_path):
    """Another process saving the same file right now keeps its temp file."""
    target = tmp_path / "p.npz"
    model = _model(seed=1)
    with writer_in_child(target) as (proc, tmp):
        pio.save_params(model, target)
        assert temps_of(target) == [tmp] and tmp.read_bytes() == b"PK half a zip"
        assert_loads_like(target, model)
        kill(proc)
    pio.save_params(model, target)
    assert temps_of(target) == []


def test_cleanup_touches_only_dead_writers_temps_of_the_same_target(tmp_path):
    target = tmp_path / "p.npz"
    with writer_in_child(target) as (proc, stale):
        kill(proc)
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"not ours")
    keep = {
        ".other.npz.abc.tmp": "file", "notes.tmp": "file", ".p.npz.abc.tmp": "file",  # other patterns
        f".other.npz.{HEX}.tmp": "file",  # a dead writer's temp, but of another target
        f".p.npz.{HEX}.tmp.bak": "file", f"p.npz.{HEX}.tmp": "file", f".p.npz.{HEX.upper()}.tmp": "file",
        f".p.npz.{HEX[::-1]}.tmp": "dir", f".p.npz.{'a' * 16}.tmp": "symlink",
        f".p.npz.{'b' * 16}.tmp": "locked",  # a live writer in this very process
    }
    locked = None
    for name, kind in keep.items():
        path = tmp_path / name
        if kind == "dir":
            path.mkdir()
        elif kind == "symlink":
            path.symlink_to(victim)
        else:
            path.write_bytes(b"x")
        if kind == "locked":
            locked = os.open(path, os.O_RDWR)
            fcntl.flock(locked, fcntl.LOCK_EX)
    try:
        model = _model(seed=1)
        pio.save_params(model, target)
    finally:
        os.close(locked)
    assert not stale.exists()
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {*keep, "p.npz", "victim.npz"}
    assert (tmp_path / f".p.npz.{'a' * 16}.tmp").is_symlink() and victim.read_bytes() == b"not ours"
    assert_loads_like(target, model)


def test_remove_stale_temps_reports_what_it_removed(tmp_path):
    target = tmp_path / "p.npz"
    dead = tmp_path / f".p.npz.{HEX}.tmp"
    dead.write_bytes(b"half")  # nobody holds its lock: what a killed writer leaves
    assert atomic.remove_stale_temps(target) == [dead]
    assert atomic.remove_stale_temps(target) == []
    assert atomic.remove_stale_temps(tmp_path / "absent" / "p.npz") == []


def test_writer_retries_when_a_cleaner_removed_its_new_temp(tmp_path, monkeypatch):
    """A cleaner may lock and unlink a temp between its creation and the writer's flock."""
    real_flock = fcntl.flock
    raced = []

    def flock_after_a_cleaner(fd, op):
        if not raced:
            raced.append(fd)
            (tmp,) = temps_of(tmp_path / "f.bin")
            tmp.unlink()  # what a cleaner that won the lock does
        return real_flock(fd, op)

    monkeypatch.setattr(atomic.fcntl, "flock", flock_after_a_cleaner)
    atomic.atomic_write(tmp_path / "f.bin", lambda f: f.write(b"data"))
    assert raced and (tmp_path / "f.bin").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_removes_its_temp_on_any_error(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"old")

    def fail(f):
        f.write(b"new")
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        atomic.atomic_write(tmp_path / "f.bin", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert (tmp_path / "f.bin").read_bytes() == b"old"


# -- full disk ----------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_then_enospc(f, **arrays):
    f.write(b"PK half a zip")
    _enospc()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    model = _model(seed=1)
    path = pio.save_params(model, tmp_path / "p.npz")
    original = path.read_bytes()
    if where == "write":
        monkeypatch.setattr(pio.np, "savez", _half_then_enospc)
    else:
        monkeypatch.setattr(atomic.os, "fsync", _enospc)
    with pytest.raises(OSError) as info:
        pio.save_params(_model(seed=2), path)
    assert info.value.errno == errno.ENOSPC
    assert f"cannot save parameters to {path}: No space left on device" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]
    assert_loads_like(path, model)


def test_permission_error_keeps_its_type_and_names_the_file(tmp_path, monkeypatch):
    def denied(*args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic.os, "replace", denied)
    with pytest.raises(PermissionError, match=r"cannot save parameters to .*p\.npz: Permission denied"):
        pio.save_params(_model(), tmp_path / "p.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs, mounted for the test and always unmounted after it (root only)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_on_a_real_small_filesystem(small_fs):
    model = _model(seed=1)
    path = pio.save_params(model, small_fs / "p.npz")
    original = path.read_bytes()
    big = _model([["conv", {"ksize": 3, "chn": 3}], 1000])  # about 440 KB of parameters
    with pytest.raises(OSError) as info:
        pio.save_params(big, path)
    assert info.value.errno == errno.ENOSPC
    assert f"cannot save parameters to {path}: No space left on device" in str(info.value)
    assert path.read_bytes() == original
    assert sorted(p.name for p in small_fs.iterdir()) == ["p.npz"]
    assert_loads_like(path, model)
    pio.save_params(_model(seed=2), path)  # the failed temp's space was freed
    assert_loads_like(path, _model(seed=2))


# -- damaged image cache ------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, np.uint8).tobytes())


def _wrong_shape(path: Path) -> None:
    with np.load(path) as data:
        arrays = dict(data)
    arrays["pixels"] = arrays["pixels"][1:]
    np.savez(path, **arrays)


def _old_format(path: Path) -> None:
    with np.load(path) as data:
        np.savez(path, pixels=data["pixels"])


DAMAGE = {"truncated": _truncate, "empty": lambda p: p.write_bytes(b""), "garbage": _garbage,
          "wrong shape": _wrong_shape, "missing arrays": _old_format}


def _user_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_rebuilt_with_one_warning(tmp_path, monkeypatch, damage):
    root = make_flowers(tmp_path / "flowers")
    first = FlowersDataset(root, resolution=8)
    cache = first.cache_path
    DAMAGE[damage](cache)
    stale = cache.parent / f".{cache.name}.{HEX}.tmp"  # a dead cache writer's leftover
    stale.write_bytes(b"half")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        second = FlowersDataset(root, resolution=8)
    messages = _user_warnings(record)
    assert len(messages) == 1 and f"image cache {cache} is damaged" in messages[0]
    np.testing.assert_array_equal(second.tr_xs, first.tr_xs)
    assert second.cache_path == cache and not stale.exists()

    def refuse(*args):
        raise AssertionError("decoded again despite the rebuilt cache")

    monkeypatch.setattr(image_io, "decode_image", refuse)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        third = FlowersDataset(root, resolution=8)
    assert _user_warnings(record) == []
    np.testing.assert_array_equal(third.tr_xs, first.tr_xs)


def test_full_disk_while_writing_the_cache_warns_and_loads(tmp_path, monkeypatch):
    root = make_flowers(tmp_path / "flowers")
    monkeypatch.setattr(atomic.os, "fsync", _enospc)
    with pytest.warns(UserWarning, match=r"cannot write image cache .*flowers-8x8-.*npz: No space left"):
        ds = FlowersDataset(root, resolution=8)
    assert ds.output_count == 3
    assert list((root / ".fastcnn_cache").iterdir()) == []
