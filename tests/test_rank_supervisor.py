"""The parent each MPI rank runs under (``fastcnn.rank_supervisor``), without MPI: the exit
status and the one line naming a killed rank, signals passed on, and a child that ends with
its parent. (tests/test_distributed.py kills a real rank under ``mpiexec``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastcnn import rank_supervisor as rs

PY = sys.executable
#: seconds within which an event that has been set in motion must have happened
LIMIT = 30


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.fixture
def rank3(monkeypatch):
    monkeypatch.setenv("PMI_RANK", "3")
    monkeypatch.delenv(rs.WORKER_VARIABLE, raising=False)


def _run_child_in_subprocess(command: list[str]) -> subprocess.CompletedProcess:
    """``run_child(command)`` in a fresh interpreter (it installs signal handlers)."""
    code = f"import sys; from fastcnn.rank_supervisor import run_child; sys.exit(run_child({command!r}))"
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=LIMIT)


@pytest.mark.parametrize("status", [0, 1, 2, 130])
def test_an_exit_status_is_passed_on_without_a_word(rank3, status):
    proc = _run_child_in_subprocess([PY, "-c", f"import sys; sys.exit({status})"])
    assert proc.returncode == status
    assert "was killed" not in proc.stderr


@pytest.mark.parametrize("signum, cause", [
    (signal.SIGKILL, "out of memory, or killed from outside"),
    (signal.SIGSEGV, "a crash in native code"),
    (signal.SIGUSR1, "killed by a signal"),
])
def test_a_killed_child_is_named_with_its_rank_and_cause(rank3, signum, cause):
    child = f"import os, signal; print(os.getpid(), flush=True); os.kill(os.getpid(), {int(signum)})"
    proc = _run_child_in_subprocess([PY, "-c", child])
    assert proc.returncode == 128 + signum
    pid = proc.stdout.split()[0]
    name = signal.Signals(signum).name
    assert proc.stderr.splitlines() == [
        f"fastcnn: rank 3 (pid {pid} on {os.uname().nodename}) was killed by {name} "
        f"(signal {int(signum)}): {cause}; ending the job"]


def test_the_message_says_a_rank_when_the_launcher_set_none(monkeypatch):
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert rs.death_message(12, signal.SIGKILL).startswith("fastcnn: a rank (pid 12 on ")


def test_under_a_launcher_without_a_pmi_socket_supervise_returns_at_once(monkeypatch):
    """Open MPI's PMIx gives no PMI_FD: the rank runs as it is (a child might fail the handshake)."""
    monkeypatch.delenv(rs.WORKER_VARIABLE, raising=False)
    monkeypatch.delenv("PMI_FD", raising=False)
    monkeypatch.delenv("PMI2_FD", raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert rs.supervise(["false"]) is None


def test_without_a_launcher_supervise_returns_at_once(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", rs.WORKER_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    assert rs.supervise(["false"]) is None  # it would exit if it ran the command


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_are_passed_to_the_child(tmp_path, rank3, signum):
    """The child reports the signal it got and exits 0; the parent, told first, survives it."""
    child = _script(tmp_path, f"""
        import signal, sys, threading
        got = threading.Event()
        signal.signal({int(signum)}, lambda s, f: got.set())
        print("ready", flush=True)
        got.wait({LIMIT})
        print("child got", signal.Signals({int(signum)}).name, flush=True)
    """)
    code = f"import sys; from fastcnn.rank_supervisor import run_child; sys.exit(run_child({[PY, child]!r}))"
    proc = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"  # the child's handler is in place
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=LIMIT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == f"child got {signal.Signals(signum).name}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_ends_with_its_parent(tmp_path):
    """A parent killed by the launcher takes its child along: nothing is left running."""
    child = _script(tmp_path, """
        import os, threading
        from fastcnn.rank_supervisor import supervise
        supervise()
        print(os.getpid(), flush=True)
        threading.Event().wait(120)
    """)
    parent_code = (f"import subprocess, os; env = dict(os.environ, {rs.WORKER_VARIABLE}=str(os.getpid())); "
                   f"subprocess.run([{PY!r}, {child!r}], env=env)")
    parent = subprocess.Popen([PY, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())  # the child has called supervise()
        parent.kill()
        parent.wait(LIMIT)
        deadline = time.monotonic() + LIMIT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, waiting for init to reap it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_whose_parent_already_ended_exits(tmp_path):
    """The parent's pid in the variable is not our parent: it ended before prctl took effect."""
    child = _script(tmp_path, """
        from fastcnn.rank_supervisor import supervise
        supervise()
        print("still here")
    """)
    env = dict(os.environ, **{rs.WORKER_VARIABLE: "1"})  # pid 1 is nobody's parent here
    proc = subprocess.run([PY, child], env=env, capture_output=True, text=True, timeout=LIMIT)
    assert proc.returncode == 1 and "still here" not in proc.stdout
