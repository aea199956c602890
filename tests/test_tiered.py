"""The ``numba`` backend's tiered first run: ``jit_ready``, ``tiered`` and ``jit_warm``.

On a cold numba cache the backend calls the prebuilt (numba-aot) kernels, switching each
kernel build to numba's JIT dispatcher once the ready file records it compiled; a child
process (``jit_warm``) compiles them. These tests drive ``TieredKernels`` with a fake
clock, a fake child starter and recording kernels, so no test sleeps or times anything;
real kernels check that both tiers give the numba backend's bits, in kernels and in
training; one test runs ``jit_warm`` and the backend's import in real subprocesses.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from model_helpers import tiny_dataset

from fastcnn import CnnModel
from fastcnn import kernels as K
from fastcnn.kernels import aot, jit_ready, tiered
from fastcnn.kernels.shapes import conv_geometry, pool_geometry

ROOT = Path(__file__).resolve().parents[1]
AOT = K.backend_available("numba-aot")
needs_aot = pytest.mark.skipif(not AOT, reason="numba-aot not built (make aot): the prebuilt tier is missing")

#: the ready file's identity in the fake-kernel tests (only compared for equality)
IDENT = {"sources": "test-sources", "cpu": "test-cpu", "numba": "0.0"}
#: the kernels the fake ``jit`` namespace serves: float ones, and one without float arrays
NAMES = ("_relu", "_relu_backward", "_max_fwd", "_tap_offsets")
#: the line saying numba's builds serve the run (``seconds`` since the first child started)
ANNOUNCED = r"fastcnn: numba's parallel kernels (for this run )?are ready \({seconds} s\); switched to them"
#: modification times handed out by ``mark_ready`` (distinct whatever the file system's granularity)
_MTIMES = itertools.count(1_600_000_000_000_000_000, 1_000_000)


def mark_ready(folder: Path, names, ident=IDENT) -> set[str]:
    """Record ``names`` ready as ``jit_warm`` does, giving the file a new modification time."""
    with jit_ready.locked(folder):
        ready = jit_ready.add(folder, ident, names)
    stamp = next(_MTIMES)
    os.utime(folder / jit_ready.READY_FILE, ns=(stamp, stamp))
    return ready


@pytest.fixture(autouse=True)
def atexit_calls(monkeypatch) -> list:
    """``tiered``'s exit hooks, recorded instead of registered (a test's tiers must not outlive it)."""
    registered = []
    monkeypatch.setattr(tiered, "atexit", types.SimpleNamespace(register=registered.append))
    return registered


# --------------------------------------------------------------------------
# fakes: clock, child starter, kernels
# --------------------------------------------------------------------------


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeChild:
    """A Popen stand-in: ``status`` is what poll() returns (None: still running)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.status = None

    def poll(self):
        return self.status


class Spawner:
    """The child starter: records ``(names, folder, background)`` of each start."""

    def __init__(self):
        self.calls: list[tuple[list[str], Path, bool]] = []
        self.children: list[FakeChild] = []

    def __call__(self, names, folder, background=False):
        self.calls.append((list(names), Path(folder), background))
        self.children.append(FakeChild(4200 + len(self.children)))
        return self.children[-1]


class Recorder:
    """A kernel build of one tier: logs ``(tier, name)`` and returns it."""

    def __init__(self, tier: str, name: str, log: list):
        self.tier, self.name, self.log = tier, name, log

    def __call__(self, *args):
        self.log.append((self.tier, self.name))
        return self.tier, self.name


class Rig:
    """A ``TieredKernels`` over recording prebuilt and jit kernels, a fake clock and a fake spawn."""

    def __init__(self, folder: Path, jit_names=NAMES, prebuilt=None):
        self.folder, self.clock, self.spawner, self.out = folder, Clock(), Spawner(), io.StringIO()
        self.log: list[tuple[str, str]] = []
        self.completed = 0
        if prebuilt is None:
            kernels = {name: Recorder("prebuilt", name, self.log) for name in aot.KERNELS}
            prebuilt = types.SimpleNamespace(wide=True, **kernels)
        jit = {name: Recorder("jit", name, self.log) for name in jit_names}
        self.tiers = tiered.TieredKernels(prebuilt, jit, folder, IDENT, self.complete, spawn=self.spawner,
                                          clock=self.clock, out=self.out)

    def complete(self) -> None:
        self.completed += 1

    def at(self, now: float) -> tiered.TieredKernels:
        """The tiers, with the clock set to ``now``."""
        self.clock.now = now
        return self.tiers

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


def relu(tiers, dtype=np.float32):
    a = np.zeros(5, dtype)
    return tiers._relu(a, a)


def relu_backward(tiers, dtype=np.float32):
    a = np.zeros(5, dtype)
    return tiers._relu_backward(a, a, a)


def max_fwd(tiers, dtype=np.float32):
    x = np.zeros((1, 4, 4, 2), dtype)
    return tiers._max_fwd(x, 2, 2, 2, 2, np.zeros((1, 2, 2, 2), dtype))


def tap_offsets(tiers):
    return tiers._tap_offsets(3, 3, 1, 42, 6)


@pytest.fixture
def rig(tmp_path) -> Rig:
    return Rig(tmp_path / "cache")


# --------------------------------------------------------------------------
# 1. jit_ready: the ready file
# --------------------------------------------------------------------------


def test_key_and_split_key_round_trip_every_build():
    """Every build of the export table has one key, and split_key gives the build back."""
    keys = [jit_ready.key(kernel, code) for kernel, code in aot.builds()]
    assert len(set(keys)) == len(keys) == len(aot.builds())
    for (kernel, code), name in zip(aot.builds(), keys, strict=True):
        assert name == f"{kernel}:{code or '-'}"
        assert jit_ready.split_key(name) == (kernel, code)
    assert jit_ready.key("_conv_fwd", "f4") == "_conv_fwd:f4"
    assert jit_ready.key("_tap_offsets", None) == "_tap_offsets:-"


@pytest.mark.parametrize("name", ["nosuch:f4", "_relu:f2", "_relu", "_relu:-", "_tap_offsets:f4", "", ":f4"])
def test_split_key_names_the_bad_key(name):
    """A name that is no build of aot.KERNELS is a ValueError that quotes it."""
    with pytest.raises(ValueError, match=re.escape(repr(name)) + " is not a kernel build of fastcnn"):
        jit_ready.split_key(name)


def test_dtype_set_is_every_float32_build_and_the_float_free_ones():
    """dtype_set('f4'): one build per kernel, f4 for the float kernels, '-' for the others."""
    f4 = jit_ready.dtype_set("f4")
    assert len(f4) == len(aot.KERNELS)
    for name in f4:
        kernel, code = jit_ready.split_key(name)
        assert code == ("f4" if aot.has_floats(aot.KERNELS[kernel][0]) else None)
    assert "_tap_offsets:-" in f4 and "_conv_fwd:f4" in f4
    f8 = {name.replace(":f4", ":f8") for name in f4 if name.endswith(":f4")}
    assert set(jit_ready.dtype_set("f8")) - set(f4) == f8


def test_add_and_read_round_trip(tmp_path):
    """add() records the names under the identity, returns the record; read() gives it back."""
    assert jit_ready.add(tmp_path, IDENT, ["_relu:f4", "_tap_offsets:-"]) == {"_relu:f4", "_tap_offsets:-"}
    assert jit_ready.read(tmp_path, IDENT) == {"_relu:f4", "_tap_offsets:-"}
    data = json.loads((tmp_path / jit_ready.READY_FILE).read_text())
    assert data == {"identity": IDENT, "ready": ["_relu:f4", "_tap_offsets:-"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [jit_ready.READY_FILE]  # no temporary file left


def test_a_record_for_another_identity_reads_empty(tmp_path):
    """Another source stamp, CPU or numba version: nothing counts as ready."""
    jit_ready.add(tmp_path, IDENT, ["_relu:f4"])
    for field in IDENT:
        assert jit_ready.read(tmp_path, {**IDENT, field: "other"}) == set()
    assert jit_ready.read(tmp_path, IDENT) == {"_relu:f4"}
    # a writer of another identity replaces the record: the first one's entries are gone
    assert jit_ready.add(tmp_path, {**IDENT, "cpu": "other"}, ["_max_fwd:f4"]) == {"_max_fwd:f4"}
    assert jit_ready.read(tmp_path, IDENT) == set()


def test_no_record_reads_empty(tmp_path):
    """No ready file (or no folder) reads as an empty record, without an error."""
    assert jit_ready.read(tmp_path, IDENT) == set()
    assert jit_ready.read(tmp_path / "absent", IDENT) == set()


@pytest.mark.parametrize("content", [
    b"", b"{", b"not json", b"\xff\xfe\x00garbage", b"[]", b"null", b'"text"', b"42",
    json.dumps({"identity": IDENT, "ready": 5}).encode(),
    json.dumps({"identity": IDENT, "ready": None}).encode(),
    json.dumps({"identity": IDENT, "ready": ["_relu:f4"]}).encode()[:-7],  # cut short by a crash
], ids=["empty", "brace", "text", "binary", "list", "null", "string", "number", "ready-int", "ready-null",
        "truncated"])
def test_a_damaged_record_reads_empty(tmp_path, content):
    """A garbled or truncated ready file is an empty record, not an error."""
    (tmp_path / jit_ready.READY_FILE).write_bytes(content)
    assert jit_ready.read(tmp_path, IDENT) == set()


def test_a_directory_in_place_of_the_record_reads_empty(tmp_path):
    """An unreadable ready file (here a directory) is an empty record."""
    (tmp_path / jit_ready.READY_FILE).mkdir()
    assert jit_ready.read(tmp_path, IDENT) == set()


def test_add_keeps_the_earlier_entries(tmp_path):
    """Two adds record the union; adding a name twice keeps one entry."""
    jit_ready.add(tmp_path, IDENT, ["_relu:f4"])
    assert jit_ready.add(tmp_path, IDENT, ["_max_fwd:f8", "_relu:f4"]) == {"_relu:f4", "_max_fwd:f8"}
    assert jit_ready.read(tmp_path, IDENT) == {"_relu:f4", "_max_fwd:f8"}
    assert json.loads((tmp_path / jit_ready.READY_FILE).read_text())["ready"] == ["_max_fwd:f8", "_relu:f4"]


def test_add_over_a_damaged_record_starts_anew(tmp_path):
    """A garbled record does not stop a writer: it is replaced by a whole one."""
    (tmp_path / jit_ready.READY_FILE).write_text("{garbage")
    assert jit_ready.add(tmp_path, IDENT, ["_relu:f4"]) == {"_relu:f4"}
    assert jit_ready.read(tmp_path, IDENT) == {"_relu:f4"}


def test_stamp_is_none_without_a_record_and_changes_with_it(tmp_path):
    """stamp(): None when absent, else the record's modification time (ns)."""
    assert jit_ready.stamp(tmp_path) is None
    assert jit_ready.stamp(tmp_path / "absent") is None
    jit_ready.add(tmp_path, IDENT, ["_relu:f4"])
    assert jit_ready.stamp(tmp_path) == os.stat(tmp_path / jit_ready.READY_FILE).st_mtime_ns
    before = jit_ready.stamp(tmp_path)
    mark_ready(tmp_path, ["_max_fwd:f4"])
    assert jit_ready.stamp(tmp_path) != before


def test_locked_creates_the_folder_and_its_lock_file(tmp_path):
    """locked() makes the cache folder if needed; a write under it lands there."""
    folder = tmp_path / "new" / "cache"
    with jit_ready.locked(folder):
        jit_ready.add(folder, IDENT, ["_relu:f4"])
    assert (folder / jit_ready.LOCK_FILE).is_file()
    assert jit_ready.read(folder, IDENT) == {"_relu:f4"}
    with jit_ready.locked(folder):  # released: it can be taken again
        pass


# --------------------------------------------------------------------------
# 2. TieredKernels over fake kernels
# --------------------------------------------------------------------------


def test_calls_run_the_prebuilt_builds_until_ready_and_note_their_keys(rig, atexit_calls):
    """Nothing ready: every call goes to prebuilt; f4 -> ':f4', f8 -> ':f8', no floats -> ':-'."""
    tiers = rig.tiers
    assert relu(tiers) == ("prebuilt", "_relu")
    assert relu_backward(tiers, np.float64) == ("prebuilt", "_relu_backward")
    assert max_fwd(tiers) == ("prebuilt", "_max_fwd")
    assert tap_offsets(tiers) == ("prebuilt", "_tap_offsets")
    assert [tier for tier, _ in rig.log] == ["prebuilt"] * 4
    assert tiers.used == {"_relu:f4", "_relu_backward:f8", "_max_fwd:f4", "_tap_offsets:-"}
    assert tiers.missing() == ["_max_fwd:f4", "_relu:f4", "_relu_backward:f8", "_tap_offsets:-"]
    # the first call says so once, and registers the exit hook once
    assert len(rig.lines()) == 1 and rig.lines()[0].startswith("fastcnn: first run on this CPU")
    assert str(rig.folder) in rig.lines()[0]
    assert atexit_calls == [tiers.start_before_exit]
    assert rig.spawner.calls == [] and rig.completed == 0
    assert tiers.wide is True


def test_the_host_set_is_the_float32_builds_of_the_jit_kernels(rig):
    """host_set: the f4 (and float-free) builds of the kernels in jit, in dtype_set order."""
    assert rig.tiers.host_set == ["_tap_offsets:-", "_max_fwd:f4", "_relu:f4", "_relu_backward:f4"]
    assert tiered.host_builds({}) == []


def test_no_child_before_the_start_delay_then_exactly_one(rig):
    """The child starts once START_DELAY has passed since the first call, on the used builds, sorted."""
    relu(rig.at(10.0))
    tap_offsets(rig.at(10.0 + tiered.START_DELAY / 2))
    max_fwd(rig.at(10.0 + tiered.START_DELAY * 0.99))
    assert rig.spawner.calls == []
    relu(rig.at(10.0 + tiered.START_DELAY))
    assert rig.spawner.calls == [(["_max_fwd:f4", "_relu:f4", "_tap_offsets:-"], rig.folder, False)]
    assert rig.tiers.child is rig.spawner.children[0]
    # the child runs (poll() None): no second one, however many polls
    for step in range(1, 6):
        relu_backward(rig.at(10.0 + tiered.START_DELAY + step * tiered.POLL_SECONDS))
        max_fwd(rig.tiers)
    assert len(rig.spawner.calls) == 1
    assert all(tier == "prebuilt" for tier, _ in rig.log)


def test_polls_are_spaced_by_poll_seconds(rig, monkeypatch):
    """Between two looks at the ready file POLL_SECONDS pass, whatever the number of calls."""
    polls = []
    real_poll = rig.tiers.poll
    monkeypatch.setattr(rig.tiers, "poll", lambda: (polls.append(rig.clock.now), real_poll())[-1])
    s, p = tiered.START_DELAY, tiered.POLL_SECONDS
    times = (0.0, s * 0.99, s, s + 0.1 * p, s + 0.98 * p, s + 1.02 * p, s + 1.5 * p, s + 2 * p, s + 2.04 * p)
    for now in times:
        relu(rig.at(now))
        relu(rig.tiers)
    assert polls == [s, s + 1.02 * p, s + 2.04 * p]


def test_a_build_recorded_ready_switches_that_kernel_at_the_next_poll(rig):
    """A key in the ready file runs numba's build after the next poll; the others stay prebuilt."""
    relu(rig.at(0.0))
    max_fwd(rig.tiers)
    relu(rig.tiers, np.float64)
    max_fwd(rig.at(1.0))  # starts the child
    assert len(rig.spawner.calls) == 1
    mark_ready(rig.folder, ["_relu:f4"])
    assert relu(rig.tiers) == ("prebuilt", "_relu")  # no poll yet: the file is not read at every call
    max_fwd(rig.at(1.0 + tiered.POLL_SECONDS))  # polls (the child still runs)
    assert rig.tiers.ready == {"_relu:f4"}
    assert relu(rig.tiers) == ("jit", "_relu")
    assert relu(rig.tiers, np.float64) == ("prebuilt", "_relu")  # the float64 build is not ready
    assert max_fwd(rig.tiers) == ("prebuilt", "_max_fwd")
    assert len(rig.spawner.calls) == 1 and rig.completed == 0


def test_builds_ready_at_construction_run_numba_s_at_once(tmp_path):
    """A ready file written before the tiers exist (an earlier child) is read when they are made."""
    folder = tmp_path / "cache"
    mark_ready(folder, ["_max_fwd:f4", "_tap_offsets:-"])
    rig = Rig(folder)
    assert max_fwd(rig.tiers) == ("jit", "_max_fwd")
    assert tap_offsets(rig.tiers) == ("jit", "_tap_offsets")
    assert max_fwd(rig.tiers, np.float64) == ("prebuilt", "_max_fwd")
    assert rig.tiers.used == {"_max_fwd:f8"}  # a ready call is not noted


def test_a_record_of_another_identity_is_not_ready(tmp_path):
    """Ready file entries written for other kernel sources do not switch anything."""
    folder = tmp_path / "cache"
    rig = Rig(folder)
    relu(rig.at(0.0))
    mark_ready(folder, ["_relu:f4"], ident={**IDENT, "sources": "other"})
    relu(rig.at(1.0))
    assert rig.tiers.ready == set()
    assert relu(rig.tiers) == ("prebuilt", "_relu")


def test_a_build_used_after_the_child_started_gets_the_next_child(rig):
    """The child finishes what it was given; a build first used later goes to a new child."""
    relu(rig.at(0.0))
    relu(rig.at(1.0))
    assert rig.spawner.calls[0][0] == ["_relu:f4"]
    tap_offsets(rig.tiers)  # used while the child runs
    mark_ready(rig.folder, ["_relu:f4"])
    rig.spawner.children[0].status = 0
    tap_offsets(rig.at(2.0))
    assert [names for names, _, _ in rig.spawner.calls] == [["_relu:f4"], ["_tap_offsets:-"]]
    assert relu(rig.tiers) == ("jit", "_relu")
    assert rig.lines()[1:] == []  # a child that exits 0 is not reported


def test_a_failed_child_is_reported_once_and_never_restarted(rig):
    """Exit status != 0: one line naming the log file; no new child; calls still served prebuilt."""
    relu(rig.at(0.0))
    relu(rig.at(1.0))
    assert len(rig.spawner.calls) == 1
    rig.spawner.children[0].status = 3
    relu(rig.at(2.0))
    lines = rig.lines()
    assert len(lines) == 2
    assert "failed (exit status 3" in lines[1]
    assert str(rig.folder / tiered.LOG_FILE) in lines[1]
    assert rig.tiers.failed == "exit status 3" and rig.tiers.child is None
    for step in range(3, 10):
        assert relu(rig.at(float(step))) == ("prebuilt", "_relu")
        assert max_fwd(rig.tiers) == ("prebuilt", "_max_fwd")
    assert len(rig.spawner.calls) == 1 and len(rig.lines()) == 2
    rig.tiers.start_before_exit()  # nor at exit
    assert len(rig.spawner.calls) == 1 and len(rig.lines()) == 2


def test_a_child_that_exits_0_without_recording_its_builds_is_not_restarted(rig):
    """A child that ends well but records nothing it was given (e.g. the sources changed under the
    run: it records under another identity) is reported once and never started again."""
    relu(rig.at(0.0))
    relu(rig.at(1.0))
    mark_ready(rig.folder, ["_relu:f4"], ident={**IDENT, "sources": "edited"})
    rig.spawner.children[0].status = 0
    for step in range(2, 12):
        assert relu(rig.at(float(step))) == ("prebuilt", "_relu")
    assert len(rig.spawner.calls) == 1
    assert rig.tiers.failed == "it ended without recording _relu:f4"
    assert len([line for line in rig.lines() if "failed (it ended without recording _relu:f4" in line]) == 1


def test_a_write_with_an_unchanged_mtime_is_read_when_the_child_ends(rig):
    """The record is read again when a child is reaped, whatever its mtime says."""
    relu(rig.at(0.0))
    relu(rig.at(1.0))
    mark_ready(rig.folder, [])
    record = rig.folder / jit_ready.READY_FILE
    relu(rig.at(2.0))  # the parent notes this mtime
    old = record.stat().st_mtime_ns
    jit_ready.add(rig.folder, IDENT, ["_relu:f4"])
    os.utime(record, ns=(old, old))  # the child's write within the same clock tick
    rig.spawner.children[0].status = 0
    relu(rig.at(3.0))
    assert rig.tiers.failed is None and len(rig.spawner.calls) == 1
    assert relu(rig.tiers) == ("jit", "_relu")


def test_a_child_that_cannot_start_is_reported_and_the_run_goes_on(rig, monkeypatch):
    """Popen failing (no processes left, say) is not the training step's error: one line, prebuilt."""
    def refuse(names, folder, background=False):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(rig.tiers, "_spawn", refuse)
    relu(rig.at(0.0))
    for step in range(1, 6):
        assert relu(rig.at(float(step))) == ("prebuilt", "_relu")
    rig.tiers.start_before_exit()
    failed = [line for line in rig.lines() if "could not start" in line]
    assert len(failed) == 1 and "Resource temporarily unavailable" in failed[0]


def test_a_thread_calling_while_another_starts_the_child_starts_none(rig, monkeypatch):
    """Two threads calling kernels: while one is starting the child, the other's look is skipped
    (it does not wait, and does not start a second child)."""
    inside, release = threading.Event(), threading.Event()
    spawn = rig.tiers._spawn

    def slow_spawn(names, folder, background=False):
        inside.set()
        assert release.wait(timeout=30)
        return spawn(names, folder, background=background)

    monkeypatch.setattr(rig.tiers, "_spawn", slow_spawn)
    relu(rig.at(0.0))
    rig.clock.now = 1.0
    first = threading.Thread(target=relu, args=(rig.tiers,))
    first.start()
    assert inside.wait(timeout=30)
    rig.clock.now = 2.0  # past the next look: this thread tries one
    assert max_fwd(rig.tiers) == ("prebuilt", "_max_fwd")  # and skips it, at once
    release.set()
    first.join(timeout=30)
    assert not first.is_alive()
    assert len(rig.spawner.calls) == 1 and rig.spawner.calls[0][0] == ["_relu:f4"]


def test_on_complete_once_every_used_and_host_build_is_ready(rig):
    """on_complete runs once, only when the used builds (f8 too) and the host's f4 set are ready."""
    relu(rig.at(0.0))
    relu_backward(rig.tiers, np.float64)
    mark_ready(rig.folder, ["_relu:f4", "_relu_backward:f8"])  # every used build, not the host set
    relu(rig.at(1.0))
    assert rig.completed == 0 and rig.spawner.calls == []  # nothing used is missing: no child
    mark_ready(rig.folder, ["_tap_offsets:-", "_max_fwd:f4", "_relu:f4"])  # host set but _relu_backward:f4
    max_fwd(rig.at(2.0), np.float64)  # a new build used: _max_fwd:f8
    assert rig.completed == 0
    assert rig.spawner.calls == [(["_max_fwd:f8"], rig.folder, False)]
    mark_ready(rig.folder, ["_relu_backward:f4", "_max_fwd:f8"])
    rig.spawner.children[0].status = 0
    max_fwd(rig.at(3.0), np.float64)
    assert rig.completed == 1 and rig.tiers.complete
    assert re.fullmatch(ANNOUNCED.format(seconds=1), rig.lines()[-1])
    for _ in range(3):
        rig.tiers.poll()
    assert rig.completed == 1
    assert len(rig.spawner.calls) == 1
    assert relu_backward(rig.tiers, np.float64) == ("jit", "_relu_backward")


def test_the_run_s_builds_ready_is_announced_once_without_completing(rig):
    """Every used build ready after a child: one line; the host set incomplete: no on_complete."""
    relu(rig.at(0.0))
    relu(rig.at(1.0))
    assert rig.spawner.calls == [(["_relu:f4"], rig.folder, False)]
    mark_ready(rig.folder, ["_relu:f4"])
    rig.spawner.children[0].status = 0
    relu(rig.at(4.0))  # the poll that finds it
    assert re.fullmatch(ANNOUNCED.format(seconds=3), rig.lines()[-1]) and len(rig.lines()) == 2
    assert rig.completed == 0 and not rig.tiers.complete
    assert relu(rig.tiers) == ("jit", "_relu")
    max_fwd(rig.at(5.0))  # a new build: a new child, and no second line when it is ready
    mark_ready(rig.folder, ["_max_fwd:f4"])
    rig.spawner.children[1].status = 0
    max_fwd(rig.at(6.0))
    assert len(rig.spawner.calls) == 2 and len(rig.lines()) == 2
    assert rig.completed == 0


def test_start_before_exit_hands_the_rest_of_the_float32_set_to_a_background_child(tmp_path):
    """At exit: one background child for the used builds not ready, then the rest of the f4 set; one line."""
    folder = tmp_path / "cache"
    mark_ready(folder, ["_conv_fwd:f4", "_relu:f4"])
    rig = Rig(folder)
    max_fwd(rig.at(0.0))
    tap_offsets(rig.tiers)
    relu(rig.tiers)  # ready: not missing
    before = len(rig.lines())
    rig.tiers.start_before_exit()
    assert len(rig.spawner.calls) == 1
    names, where, background = rig.spawner.calls[0]
    assert where == folder and background is True
    ready = {"_conv_fwd:f4", "_relu:f4"}
    rest = [n for n in jit_ready.dtype_set("f4") if n not in ready | {"_max_fwd:f4", "_tap_offsets:-"}]
    assert names == ["_max_fwd:f4", "_tap_offsets:-", *rest]
    assert sorted(names) == sorted(set(jit_ready.dtype_set("f4")) - ready)
    lines = rig.lines()[before:]
    assert len(lines) == 1
    assert f"numba goes on compiling {len(names)} kernel builds in the background" in lines[0]
    assert f"pid {rig.spawner.children[0].pid}" in lines[0]
    assert str(folder / tiered.LOG_FILE) in lines[0]


def test_start_before_exit_includes_used_float64_builds(rig):
    """A float64 build used and not ready goes to the exit child too, before the f4 set."""
    relu(rig.at(0.0), np.float64)
    rig.tiers.start_before_exit()
    names = rig.spawner.calls[0][0]
    assert names[0] == "_relu:f8"
    assert names[1:] == jit_ready.dtype_set("f4")


def test_start_before_exit_does_nothing_when_complete_or_nothing_is_missing(tmp_path):
    """Complete, or the whole f4 set ready: no child at exit, no line."""
    folder = tmp_path / "cache"
    mark_ready(folder, jit_ready.dtype_set("f4"))
    rig = Rig(folder)
    rig.tiers.start_before_exit()  # not complete yet (never polled), but nothing is missing
    assert rig.spawner.calls == [] and rig.lines() == []
    rig.tiers.poll()
    assert rig.completed == 1
    rig.tiers.start_before_exit()
    assert rig.spawner.calls == [] and rig.lines() == []


def test_a_non_array_float_argument_goes_to_the_prebuilt_kernel(tmp_path):
    """Where the float array belongs a list, an int array or float16 reaches prebuilt, whose checks raise."""

    def checked(*args):
        raise TypeError(f"_relu: argument 0 must be a C-contiguous 1-d array, got {type(args[0]).__name__}")

    log = []
    prebuilt = types.SimpleNamespace(wide=False, **{n: Recorder("prebuilt", n, log) for n in NAMES})
    prebuilt._relu = checked
    folder = tmp_path / "cache"
    mark_ready(folder, ["_relu:f4", "_relu:f8", "_max_fwd:f4"])  # even with numba's builds ready
    rig = Rig(folder, prebuilt=prebuilt)
    out = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match="argument 0 must be a C-contiguous 1-d array, got list"):
        rig.tiers._relu([1.0, 2.0, 3.0], out)
    with pytest.raises(TypeError, match="got ndarray"):
        rig.tiers._relu(np.zeros(3, np.int64), out)
    with pytest.raises(TypeError, match="got ndarray"):
        rig.tiers._relu(np.zeros(3, np.float16), out)
    assert rig.tiers._max_fwd(None, 2, 2, 2, 2, None) == ("prebuilt", "_max_fwd")
    assert rig.log == []  # numba's builds never saw them
    assert rig.tiers.used == set() and rig.lines() == []  # and nothing counts as used
    assert relu(rig.tiers) == ("jit", "_relu")
    assert rig.tiers.wide is False


def test_a_closed_output_stream_is_not_an_error(rig):
    """The tiers' notices go to a stream that may be closed (stderr at exit): the calls go on."""
    rig.out.close()
    assert relu(rig.at(0.0)) == ("prebuilt", "_relu")
    rig.tiers.start_before_exit()
    assert len(rig.spawner.calls) == 1


def test_spawn_child_runs_jit_warm_into_the_log_file(tmp_path, monkeypatch):
    """The real starter: ``python -m fastcnn.kernels.jit_warm [--background] KEYS``, output to the log."""
    started = []

    def popen(cmd, **kwargs):
        started.append((cmd, kwargs, Path(kwargs["stdout"].name)))
        return FakeChild(77)

    monkeypatch.setattr(tiered.subprocess, "Popen", popen)
    assert tiered.spawn_child(["_relu:f4", "_tap_offsets:-"], tmp_path, background=True).pid == 77
    assert tiered.spawn_child(["_relu:f8"], tmp_path, background=False).pid == 77
    (cmd1, kw1, log1), (cmd2, _, log2) = started
    child = [sys.executable, "-m", "fastcnn.kernels.jit_warm", "--folder", str(tmp_path)]
    assert cmd1 == [*child, "--background", "_relu:f4", "_tap_offsets:-"]
    assert cmd2 == [*child, "_relu:f8"]
    assert log1 == log2 == tmp_path / tiered.LOG_FILE and log1.is_file()
    assert kw1["stdin"] == subprocess.DEVNULL and kw1["stderr"] == subprocess.STDOUT


# --------------------------------------------------------------------------
# 3. FASTCNN_COLD_START
# --------------------------------------------------------------------------


def test_cold_start_mode_defaults_to_prebuilt(monkeypatch):
    """Unset or empty: 'prebuilt'."""
    monkeypatch.delenv(tiered.COLD_START_ENV, raising=False)
    assert tiered.cold_start_mode() == "prebuilt"
    monkeypatch.setenv(tiered.COLD_START_ENV, "")
    assert tiered.cold_start_mode() == "prebuilt"


@pytest.mark.parametrize("value, mode", [("compile", "compile"), (" Compile ", "compile"),
                                         ("prebuilt", "prebuilt"), ("PREBUILT", "prebuilt")])
def test_cold_start_mode_is_honoured(monkeypatch, value, mode):
    """'compile' and 'prebuilt', in any case and with spaces around."""
    monkeypatch.setenv(tiered.COLD_START_ENV, value)
    assert tiered.cold_start_mode() == mode


def test_an_unknown_cold_start_mode_warns_and_counts_as_prebuilt(monkeypatch):
    """An unknown value: a RuntimeWarning naming the variable and the value, then 'prebuilt'."""
    monkeypatch.setenv(tiered.COLD_START_ENV, "jit")
    with pytest.warns(RuntimeWarning, match=r"FASTCNN_COLD_START='jit' is not one of prebuilt, compile"):
        assert tiered.cold_start_mode() == "prebuilt"


# --------------------------------------------------------------------------
# install(): which backends get the tiers
# --------------------------------------------------------------------------


@pytest.fixture
def cold_install(tmp_path, monkeypatch):
    """install() against a ready file in tmp_path, numba's cache indexes seen as empty."""
    from fastcnn.kernels import jit_warm

    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv(tiered.COLD_START_ENV, "prebuilt")
    monkeypatch.setattr(jit_warm, "cache_folder", lambda kernels: folder)
    monkeypatch.setattr(jit_warm, "cached", lambda kernels, names: [])
    monkeypatch.setattr(jit_ready, "identity", lambda: IDENT)
    return folder


def _fake_host(wide):
    return types.SimpleNamespace(k="numba's kernels", wide=wide)


@needs_aot
def test_install_gives_a_cold_host_the_tiers_until_complete(cold_install):
    """Cold cache: host.k becomes the tiers; on completion it is numba's module again."""
    from fastcnn.kernels import numba_kernels

    host = _fake_host(numba_kernels._WIDE)
    tiers = tiered.install(host, numba_kernels, lambda: 2)
    assert isinstance(tiers, tiered.TieredKernels) and host.k is tiers
    jit = {name for name in aot.KERNELS if hasattr(numba_kernels, name)}
    assert tiers.host_set == tiered.host_builds(dict.fromkeys(jit))
    assert tiers.folder == cold_install and tiers.ident == IDENT
    assert all(isinstance(getattr(tiers, name), tiered.TieredKernel) for name in jit)
    tiers._on_complete()
    assert host.k is numba_kernels


@needs_aot
def test_install_leaves_the_host_alone_when_off_warm_or_unusable(cold_install, monkeypatch):
    """compile mode, a ready file or cache holding the host set, another register block, no build: None."""
    from fastcnn.kernels import jit_warm, numba_kernels

    jit = {name: getattr(numba_kernels, name) for name in aot.KERNELS if hasattr(numba_kernels, name)}
    needed = tiered.host_builds(jit)
    host = _fake_host(numba_kernels._WIDE)
    # another register-block variant than the prebuilt build's
    other = _fake_host(not aot.load(lambda: 1).wide)
    assert tiered.install(other, numba_kernels, lambda: 2) is None and other.k == "numba's kernels"
    # no usable prebuilt build
    build_problem = aot.build_problem
    monkeypatch.setattr(aot, "build_problem", lambda: ("stale (built from other kernel sources)", None))
    assert tiered.install(host, numba_kernels, lambda: 2) is None
    monkeypatch.setattr(aot, "build_problem", build_problem)
    # compile mode
    monkeypatch.setenv(tiered.COLD_START_ENV, "compile")
    assert tiered.install(host, numba_kernels, lambda: 2) is None
    monkeypatch.setenv(tiered.COLD_START_ENV, "prebuilt")
    # numba's cache already holds every host build (an earlier run in compile mode): recorded, warm
    monkeypatch.setattr(jit_warm, "cached", lambda kernels, names: list(names))
    assert tiered.install(host, numba_kernels, lambda: 2) is None
    assert jit_ready.read(cold_install, IDENT) == set(needed)
    # a child compiling holds the record's lock: the start records nothing and does not wait
    (cold_install / jit_ready.READY_FILE).unlink()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from fastcnn.kernels import jit_ready
        with jit_ready.locked(Path({str(cold_install)!r})):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    start = threading.Thread(target=lambda: None)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = []
        start = threading.Thread(target=lambda: result.append(tiered.install(host, numba_kernels, lambda: 2)))
        start.start()
        start.join(timeout=30)  # a start that waited for the lock would still be waiting
        assert not start.is_alive() and result == [None]  # warm by the indexes
        assert not (cold_install / jit_ready.READY_FILE).exists()  # not recorded: the lock was busy
    finally:
        holder.communicate("", timeout=30)
        if start.ident is not None:
            start.join(timeout=30)
    mark_ready(cold_install, needed)
    # the ready file alone says warm: the cache indexes are not read
    monkeypatch.setattr(jit_warm, "cached", lambda kernels, names: pytest.fail("indexes read"))
    assert tiered.install(host, numba_kernels, lambda: 2) is None
    assert host.k == "numba's kernels"


# --------------------------------------------------------------------------
# 4. real kernels: both tiers give the numba backend's bits
# --------------------------------------------------------------------------

#: (x shape, (kh, kw), ychn, stride, padding): one channel (the 5x5 blocks, the c1 backward), 3 channels
#: (the 4x3 blocks), 4 -> 5 channels (_corr), stride 2 (im2col + sgemm); odd sizes and batches
REAL_CONVS = [
    ((3, 12, 11, 1), (5, 5), 7, 1, "valid"),
    ((5, 9, 11, 3), (3, 3), 6, 1, "same"),
    ((3, 10, 9, 4), (2, 3), 5, 1, "valid"),
    ((3, 11, 12, 2), (3, 2), 3, 2, "same"),
]


class Counted:
    """A real kernel, counting its calls per tier in ``tally``."""

    def __init__(self, fn, tier: str, tally: dict):
        self.fn, self.tier, self.tally = fn, tier, tally

    def __call__(self, *args):
        self.tally[self.tier] += 1
        return self.fn(*args)


def _real_tiers(folder: Path, spawner: Spawner, clock: Clock, tally: dict, out=None):
    """TieredKernels over the numba-aot build (cut over 2 threads) and numba's dispatchers."""
    from fastcnn.kernels import numba_kernels

    real = aot.load(lambda: 2)
    prebuilt = types.SimpleNamespace(wide=real.wide, **{name: Counted(getattr(real, name), "prebuilt", tally)
                                                        for name in aot.KERNELS})
    jit = {name: Counted(getattr(numba_kernels, name), "jit", tally)
           for name in aot.KERNELS if hasattr(numba_kernels, name)}
    return tiered.TieredKernels(prebuilt, jit, folder, IDENT, lambda: tally.__setitem__("complete", 1),
                                spawn=spawner, clock=clock, out=io.StringIO() if out is None else out)


def _host_results(host) -> list[np.ndarray]:
    """Every contract function the tiers serve, on float32 inputs of REAL_CONVS: their results in order."""
    results = []
    for seed, (x_shape, (kh, kw), yc, stride, padding) in enumerate(REAL_CONVS):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(x_shape).astype(np.float32)
        k = (rng.standard_normal((kh, kw, x_shape[3], yc)) * 0.4).astype(np.float32)
        b = (rng.standard_normal(yc) * 0.3).astype(np.float32)
        geo = conv_geometry(x_shape, kh, kw, stride, padding)
        y = host.conv2d_forward(x, k, b, geo)
        a = host.relu_forward(y)
        g_a = host.relu_backward(rng.standard_normal(y.shape).astype(np.float32), a)
        results += [y, a, g_a, *host.conv2d_backward(g_a, x, k, geo)]
        results += host.conv2d_backward(g_a, x, k, geo, input_grad=False)[1:]
        pgeo = pool_geometry(y.shape, 3, 2)
        g_p = rng.standard_normal((x_shape[0], pgeo.yh, pgeo.yw, yc)).astype(np.float32)
        results += [host.max_pool_forward(a, pgeo), host.max_pool_backward(g_p, a, pgeo),
                    host.avg_pool_forward(a, pgeo), host.avg_pool_backward(g_p, a, pgeo)]
        for pool in ("max", "avg"):
            if host.conv_pool_fusable(geo, "relu", pool, pgeo, x_shape[3]):
                y_p, code = host.conv_pool_forward(x, k, b, geo, "relu", pool, pgeo)
                results += [y_p, code, *host.conv_pool_backward(g_p, code, x, k, geo, "relu", pool, pgeo)]
    rng = np.random.default_rng(99)
    p, g, m, v = (rng.standard_normal(1001).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    host.adam_update(p, g, m, v, 0.01, 0.9, 0.999, 1e-8)
    return [*results, p, m, v]


def _assert_same_bits(got: list, want: list, what: str) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: result {i}"
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: result {i}")


@needs_aot
def test_both_tiers_give_the_numba_backend_s_bits(tmp_path, monkeypatch):
    """Prebuilt (cut over 2 threads) and then numba's kernels, through the tiers: the backend's bits."""
    from fastcnn.kernels import numba_kernels
    from fastcnn.kernels.numba_host import NumbaHost

    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)  # cut even these small calls over the threads
    tally = {"prebuilt": 0, "jit": 0}
    spawner, folder = Spawner(), tmp_path / "cache"
    tiers = _real_tiers(folder, spawner, Clock(), tally)

    def host():
        return NumbaHost(tiers, wide=numba_kernels._WIDE, threads=lambda: 2)

    prebuilt = _host_results(host())
    assert tally == {"prebuilt": tally["prebuilt"], "jit": 0} and tally["prebuilt"] > 0
    used = set(tiers.used)
    assert {"_conv_fwd:f4", "_conv_fwd_blocked:f4", "_conv_bwd:f4", "_conv_bwd_c1:f4", "_conv_pool_fwd:f4",
            "_conv_pool_bwd:f4", "_conv_pool_bwd_c1:f4", "_ext_regions:f4", "_undo_ext_regions:f4",
            "_sum_batch:f4", "_max_fwd:f4", "_max_bwd:f4", "_avg_fwd:f4", "_avg_bwd:f4", "_relu:f4",
            "_relu_backward:f4", "_adam:f4", "_tap_offsets:-", "_tap_weights:f4", "_flipped_weights:f4",
            "_c1_weights:f4", "_sum_parts:f4"} == used
    mark_ready(folder, [jit_ready.key(kernel, code) for kernel, code in aot.builds()])
    tiers.poll()
    assert tally.get("complete") == 1 and spawner.calls == []
    calls = tally["prebuilt"]
    jitted = _host_results(host())
    assert tally["prebuilt"] == calls and tally["jit"] > 0
    numba = _host_results(K.get_backend("numba"))
    _assert_same_bits(prebuilt, numba, "prebuilt tier")
    _assert_same_bits(jitted, numba, "numba tier")
    # the real prebuilt kernel checks what the tiers pass on to it
    with pytest.raises(TypeError, match="_relu: argument 0 must be a C-contiguous 1-d array, got list"):
        tiers._relu([1.0, 2.0], np.zeros(2, np.float32))


#: conv + max (fused), a strided conv (im2col), avg pooling, a dense layer; Adam
TRAIN_HCONFIGS = [
    ["conv", {"ksize": 3, "chn": 6}],
    ["max", {"stride": 2}],
    ["conv", {"ksize": [2, 3], "chn": 5, "stride": 2}],
    ["avg", {"ksize": 2, "stride": 1}],
    8,
]


def _four_steps(between=None) -> dict[str, np.ndarray]:
    """Four training steps of a small numba model (odd batches); ``between(step)`` runs before each."""
    model = CnnModel("tiers", tiny_dataset(n=40, shape=(11, 10, 3)), None, TRAIN_HCONFIGS, backend="numba",
                     seed=4)
    model.optimizer.lr = 0.01
    for step in range(4):
        if between is not None:
            between(step)
        x, y = model.dataset.get_train_data(np.arange(step * 7, step * 7 + 7))
        loss, _, grads = model.compute_step(x, y, reuse_grads=True)
        assert np.isfinite(loss)
        model.optimizer.update(model.params, grads)
    return {key: value.copy() for key, value in model.params.items()}


@needs_aot
def test_training_switching_tiers_mid_run_gives_the_same_parameters(tmp_path, monkeypatch):
    """Steps 1-2 prebuilt, 3 half switched, 4 on numba's kernels: the untiered run's parameters, bitwise."""
    from fastcnn.kernels import numba_cpu

    monkeypatch.setattr(aot, "MIN_SPLIT_BYTES", 0)
    want = _four_steps()
    fresh = CnnModel("tiers", tiny_dataset(n=40, shape=(11, 10, 3)), None, TRAIN_HCONFIGS, backend="numba",
                     seed=4).params
    assert any(not np.array_equal(fresh[key], want[key]) for key in want)  # it trained

    tally = {"prebuilt": 0, "jit": 0}
    spawner, clock, folder = Spawner(), Clock(), tmp_path / "cache"
    tiers = _real_tiers(folder, spawner, clock, tally)
    monkeypatch.setattr(numba_cpu.BACKEND, "k", tiers)
    monkeypatch.setattr(numba_cpu.BACKEND, "_offsets", {})  # the tap offsets through the tiers too
    seen = []

    def between(step):
        seen.append(dict(tally))
        if step == 2:  # half the builds used so far are compiled
            half = sorted(tiers.used)[::2]
            mark_ready(folder, half)
            clock.now = 1.0
            tiers.poll()
            assert tiers.ready == set(half)
            assert spawner.calls == [(sorted(tiers.used - set(half)), folder, False)]
        if step == 3:  # now all
            mark_ready(folder, [jit_ready.key(kernel, code) for kernel, code in aot.builds()])
            spawner.children[0].status = 0
            clock.now = 2.0
            tiers.poll()
            assert tally.get("complete") == 1

    got = _four_steps(between)
    seen.append(dict(tally))
    assert seen[2]["jit"] == 0 and seen[2]["prebuilt"] > 0  # steps 1 and 2: prebuilt only
    assert seen[3]["jit"] > 0 and seen[3]["prebuilt"] > seen[2]["prebuilt"]  # step 3: both
    assert seen[4]["prebuilt"] == seen[3]["prebuilt"] and seen[4]["jit"] > seen[3]["jit"]  # step 4: numba's
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# --------------------------------------------------------------------------
# 5. the real child and the backend's import, in subprocesses
# --------------------------------------------------------------------------


def _run(args, env, timeout=60):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout, check=False)


@needs_aot
def test_jit_warm_and_a_cold_import_end_to_end(tmp_path):
    """jit_warm compiles, records two builds, then none; a bad key exits 2; a cold import gets the tiers."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), tiered.COLD_START_ENV: "prebuilt"}
    first = _run(["-m", "fastcnn.kernels.jit_warm", "_relu:f4", "_relu_backward:f4"], env)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^_relu:f4 \d+\.\d s$", first.stdout, re.M)
    assert re.search(r"^_relu_backward:f4 \d+\.\d s$", first.stdout, re.M)
    assert "fastcnn: 2 kernel builds compiled" in first.stdout
    records = list((tmp_path / "numba").rglob(jit_ready.READY_FILE))
    assert len(records) == 1
    data = json.loads(records[0].read_text())
    assert data["ready"] == ["_relu:f4", "_relu_backward:f4"]
    assert sorted(data["identity"]) == ["cpu", "numba", "sources"]

    again = _run(["-m", "fastcnn.kernels.jit_warm", "--folder", str(records[0].parent), "_relu:f4",
                  "_relu_backward:f4"], env)  # as the backend starts it: the lock taken first
    assert again.returncode == 0, again.stderr
    assert "fastcnn: 0 kernel builds compiled" in again.stdout
    elsewhere = _run(["-m", "fastcnn.kernels.jit_warm", "--folder", str(tmp_path), "_relu:f4"], env)
    assert elsewhere.returncode != 0
    assert f"numba caches fastcnn's kernels in {records[0].parent}, not in {tmp_path}" in elsewhere.stderr

    bad = _run(["-m", "fastcnn.kernels.jit_warm", "_relu:f4", "nosuch:f4"], env)
    assert bad.returncode == 2
    assert "'nosuch:f4' is not a kernel build of fastcnn" in bad.stderr
    assert json.loads(records[0].read_text())["ready"] == ["_relu:f4", "_relu_backward:f4"]  # untouched

    probe = ("from fastcnn.kernels import numba_cpu\n"
             "tiers = numba_cpu.TIERS\n"
             "print(type(numba_cpu.BACKEND.k).__name__, sorted(tiers.ready) if tiers else None)\n")
    cold = _run(["-c", probe], env)
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.split() == ["TieredKernels", "['_relu:f4',", "'_relu_backward:f4']"]
    off = _run(["-c", probe], {**env, tiered.COLD_START_ENV: "compile"})
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["module", "None"]


# --------------------------------------------------------------------------
# 6. fastcnn compile
# --------------------------------------------------------------------------


def test_fastcnn_compile_compiles_the_builds_named_and_refuses_a_bad_one(capsys):
    """``fastcnn compile BUILD ...`` compiles (or finds) them in the foreground, a line each; a bad
    name is a usage error naming it, exit status 2."""
    from fastcnn.cli import main

    assert main(["compile", "_relu:f4", "_tap_offsets:-"]) == 0
    out = capsys.readouterr().out
    assert "fastcnn: compiling 2 kernel builds for this CPU" in out
    done = r"fastcnn: [0-2] kernel builds compiled in \d+\.\d s \([0-2] were compiled already\)"
    assert re.search(done, out)
    with pytest.raises(SystemExit) as stop:
        main(["compile", "_relu:f4", "nosuch:f4"])
    assert stop.value.code == 2
    assert "'nosuch:f4' is not a kernel build of fastcnn" in capsys.readouterr().err


def test_fastcnn_compile_float64_adds_the_float64_set(monkeypatch, capsys):
    """No names: the float32 set; --float64: then the float64 builds (as jit_warm gets them)."""
    from fastcnn.cli import main
    from fastcnn.kernels import jit_warm

    asked = []
    monkeypatch.setattr(jit_warm, "compile_builds", lambda names: asked.append(list(names)) or [])
    assert main(["compile"]) == 0
    assert main(["compile", "--float64"]) == 0
    f4, f8 = jit_ready.dtype_set("f4"), jit_ready.dtype_set("f8")
    assert asked[0] == f4
    assert asked[1] == f4 + [name for name in f8 if name not in f4]
    assert len(capsys.readouterr().out.splitlines()) == 4  # two lines per run
