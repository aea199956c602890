"""A parent process for every MPI rank, so that a rank that dies is named with its cause.

When a rank dies from a signal (SIGKILL from the out-of-memory killer or a user, SIGSEGV),
the MPI launcher ends the others at once, and none of them can say which rank it was or why.
So under a launcher, ``supervise()`` keeps the process the launcher started as a small
parent (it does no MPI) and runs the same command again as its child, the real rank, with
the launcher's environment and its PMI socket. The parent waits: when the child is killed
by a signal it prints one line (here wrapped),

    fastcnn: rank 1 (pid 22505 on node3) was killed by SIGKILL (signal 9): out of memory,
    or killed from outside; ending the job

and exits with 128 + the signal number, so the launcher ends the other ranks; their children
follow their parents (``PR_SET_PDEATHSIG`` on Linux), so nothing is left running. Any other
exit status is passed on unchanged. SIGINT and SIGTERM reaching the parent are passed to the
child (Ctrl-C on ``mpiexec``: every rank stops after its step, ``fastcnn.distributed``).

It acts under the launchers that hand a rank its PMI socket by number (``PMI_FD``: MPICH's
hydra, the one ``fastcnn[mpi]`` installs and the tests use; Slurm's PMI-2), which a child
inherits; under others (Open MPI's PMIx) the rank runs as before, and the launcher names a
dead rank by its process id only (rank 0's first line maps ids to ranks).

``fastcnn train`` calls it first thing under a launcher; a script of one's own can too, as
the first statement of its main (the child runs the script again from the start):

    from fastcnn.rank_supervisor import supervise
    supervise()
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys

#: set in the child's environment (to the parent's pid): this process is the rank itself
WORKER_VARIABLE = "FASTCNN_RANK_PARENT"
#: environment variables naming a socket the launcher gave the rank (it must stay open)
PMI_FDS = ("PMI_FD", "PMI2_FD")
#: Linux prctl option: a signal this process gets when its parent ends
_PR_SET_PDEATHSIG = 1
#: signals the parent passes on to the child instead of acting on them
FORWARDED = (signal.SIGINT, signal.SIGTERM)
#: why a rank may get each signal, for the message
CAUSES = {
    signal.SIGKILL: "out of memory, or killed from outside",
    signal.SIGSEGV: "a crash in native code",
    signal.SIGBUS: "a crash in native code",
    signal.SIGABRT: "an abort in native code",
    signal.SIGTERM: "asked to terminate",
}


def supervise(argv: list[str] | None = None) -> None:
    """Under an MPI launcher, run ``argv`` (default: this process's own command line) as a
    child and exit with its status (never returns); in that child, or without a launcher,
    return at once. See the module docstring."""
    from .distributed import launched_by_mpi

    parent = os.environ.get(WORKER_VARIABLE)
    if parent is not None:
        _follow_parent(int(parent) if parent.isdigit() else None)
        return
    if not launched_by_mpi() or not any(os.environ.get(name, "").isdigit() for name in PMI_FDS):
        return  # no launcher, or one whose handshake a child might not pass (Open MPI's PMIx): as is
    command = argv if argv is not None else [sys.executable, *sys.orig_argv[1:]]
    sys.exit(run_child(command))


def run_child(command: list[str]) -> int:
    """Run ``command`` as this rank's child and return the exit status to end with."""
    env = dict(os.environ, **{WORKER_VARIABLE: str(os.getpid())})
    # the launcher's PMI socket (MPICH's hydra; Slurm's PMI-2), so the child talks to the launcher
    keep = tuple(int(os.environ[name]) for name in PMI_FDS if os.environ.get(name, "").isdigit())
    pending: list[int] = []
    for signum in FORWARDED:  # a handler, not SIG_IGN: the child starts with the defaults
        signal.signal(signum, lambda sig, frame: pending.append(sig))
    child = subprocess.Popen(command, env=env, pass_fds=keep)
    for signum in FORWARDED:
        signal.signal(signum, lambda sig, frame: _pass_on(child, sig))
    for signum in pending:  # one that came while the child started
        _pass_on(child, signum)
    status = child.wait()
    if status >= 0:
        return status
    signum = -status
    print(death_message(child.pid, signum), file=sys.stderr, flush=True)
    return 128 + signum


def death_message(pid: int, signum: int) -> str:
    """The line naming the rank whose process ``pid`` was killed by ``signum``, and the cause."""
    from .distributed import launcher_rank

    rank = launcher_rank()
    who = f"rank {rank}" if rank is not None else "a rank"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    cause = CAUSES.get(signum, "killed by a signal")
    return (f"fastcnn: {who} (pid {pid} on {socket.gethostname()}) was killed by {name} (signal "
            f"{signum}): {cause}; ending the job")


def _pass_on(child: subprocess.Popen, signum: int) -> None:
    if child.poll() is None:
        child.send_signal(signum)


def _follow_parent(parent: int | None) -> None:
    """In the child: end with the parent (the launcher kills the parents only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # it ended before prctl took effect
        os._exit(1)
