"""The ``numba`` backend's first run: the prebuilt kernels at once, numba's parallel ones once compiled.

numba compiles a parallel kernel in 5-15 s: SimpleConvNet's take 25 s, the whole
float32 set 90 s on one core (AMD Zen 5; docs/numba_aot.md). The same kernels,
compiled serially when fastcnn is installed (``numba-aot``, ``make aot``), give the
same bits, 1.1-1.3x slower (their threads are cut per call). So on a cold cache, when
that build is there, the backend starts on it, and START_DELAY seconds after its first
call (a first step has shown which kernels the run uses) a child process compiles
those kernels into numba's cache (``python -m fastcnn.kernels.jit_warm``). Each kernel
switches over as soon as its build is recorded ready (``jit_ready``); a float64 call
asks for its float64 build. At exit, a run that still misses some of the float32 set
starts a last child, at low priority, that outlives it and compiles the rest, so the
next process finds the cache warm and never starts any of this. Once the float32
builds of every kernel the host calls are ready, the host calls numba's kernels directly.

``FASTCNN_COLD_START=compile`` turns it off: numba compiles in the process, as it must
where there is no prebuilt build (the run says so and shows progress).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import aot, jit_ready

#: the environment variable that chooses the cold start: "prebuilt" (the default) or "compile"
COLD_START_ENV = "FASTCNN_COLD_START"
COLD_STARTS = ("prebuilt", "compile")
#: seconds between looks at the ready file and the child, while running prebuilt kernels
POLL_SECONDS = 0.5
#: seconds after the first call before the child starts: by then a first step has shown
#: which kernels the process uses, and the child compiles those first
START_DELAY = 0.3
#: where the child's report goes, in the cache folder
LOG_FILE = "fastcnn-jit-compile.log"


def cold_start_mode() -> str:
    """``FASTCNN_COLD_START``'s value; an unknown one warns and counts as the default."""
    mode = os.environ.get(COLD_START_ENV, "").strip().lower() or COLD_STARTS[0]
    if mode not in COLD_STARTS:
        warnings.warn(f"fastcnn: {COLD_START_ENV}={mode!r} is not one of {', '.join(COLD_STARTS)}; "
                      f"using {COLD_STARTS[0]!r}", RuntimeWarning, stacklevel=2)
        mode = COLD_STARTS[0]
    return mode


def spawn_child(names: list[str], folder: Path, background: bool) -> subprocess.Popen:
    """Start ``jit_warm`` on ``names`` (``background``: at low priority); its report goes to the
    log file."""
    command = [sys.executable, "-m", f"{__package__}.jit_warm", "--folder", str(folder)]
    command += ["--background"] if background else []
    with open(folder / LOG_FILE, "a") as log:
        return subprocess.Popen([*command, *names],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


class TieredKernel:
    """One kernel: numba's build for the call's dtype once it is ready, else the prebuilt one."""

    __slots__ = ("name", "float_arg", "keys", "fixed_key", "prebuilt", "jit", "tiers")

    def __init__(self, name: str, prebuilt, jit, tiers: TieredKernels):
        kinds = aot.KERNELS[name][0]
        floats = [i for i, kind in enumerate(kinds) if kind.startswith("F")]
        self.name, self.prebuilt, self.jit, self.tiers = name, prebuilt, jit, tiers
        self.float_arg = floats[0] if floats else None
        self.keys = {dtype: jit_ready.key(name, code) for dtype, code in aot.FLOAT_CODES.items()}
        self.fixed_key = jit_ready.key(name, None)

    def __call__(self, *args):
        if self.float_arg is None:
            key = self.fixed_key
        else:
            arg = args[self.float_arg]
            key = self.keys.get(arg.dtype) if isinstance(arg, np.ndarray) else None
            if key is None:  # not a float array: the prebuilt kernel's checks say what is wrong
                return self.prebuilt(*args)
        if key in self.tiers.ready:
            return self.jit(*args)
        self.tiers.want(key)
        return self.prebuilt(*args)


class TieredKernels:
    """The kernel namespace of a cold ``numba`` backend (see the module docstring).

    ``prebuilt``: the numba-aot namespace; ``jit``: kernel name -> numba dispatcher, for the
    kernels the host calls; ``folder``/``ident``: the ready file's place and identity;
    ``on_complete``: called once, when numba's kernels can serve every call from then on (the
    host then calls them directly).
    ``spawn``, ``clock``, ``out``: the child starter, the clock and the stream for the two
    lines this prints (stderr), replaceable in tests.
    """

    def __init__(self, prebuilt, jit: dict, folder: Path, ident: dict, on_complete, *,
                 spawn=spawn_child, clock=time.monotonic, out=None):
        self.wide = prebuilt.wide
        self.folder, self.ident = Path(folder), ident
        self.ready: set[str] = jit_ready.read(self.folder, ident)
        self._stamp = jit_ready.stamp(self.folder)
        self.used: set[str] = set()
        self.child: subprocess.Popen | None = None
        self.failed: str | None = None
        self.complete = False
        self._on_complete, self._spawn, self._clock, self._out = on_complete, spawn, clock, out
        self._first: float | None = None
        self._next = 0.0
        self._started: float | None = None
        self._announced = False
        self._given: set[str] = set()
        self._polling = threading.Lock()
        #: the float32 builds of the kernels the host calls: once ready (and every build used),
        #: the host calls numba's kernels directly
        self.host_set = host_builds(jit)
        for name, dispatcher in jit.items():
            setattr(self, name, TieredKernel(name, getattr(prebuilt, name), dispatcher, self))

    def _say(self, text: str) -> None:
        out = self._out if self._out is not None else sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed stderr: carry on in silence
            print(f"fastcnn: {text}", file=out, flush=True)

    def want(self, key: str) -> None:
        """A call ran the prebuilt build ``key``: note it, and now and then look for news."""
        if key not in self.used:
            self.used.add(key)
        now = self._clock()
        if self._first is None:
            self._first = now
            self._next = now + START_DELAY
            atexit.register(self.start_before_exit)
            self._say("first run on this CPU: running the prebuilt kernels (numba-aot, the same results) "
                      "while numba compiles its faster parallel ones in the background, once "
                      f"(about half a minute; cached in {self.folder})")
        if now >= self._next and self._polling.acquire(blocking=False):  # one thread looks at a time
            try:
                self._next = now + POLL_SECONDS
                self.poll()
            finally:
                self._polling.release()

    def poll(self) -> None:
        """Read the ready file if it changed, reap a finished child, start one for what is missing."""
        self._read_record()
        if self.child is not None:
            status = self.child.poll()
            if status is None:
                return
            self.child = None
            self._read_record(force=True)  # a write within the file clock's tick has the old mtime
            left = sorted(self._given.intersection(self.missing()))
            if status != 0:
                self._give_up(f"exit status {status}")
            elif left:
                self._give_up(f"it ended without recording {', '.join(left)}")
        if not self.missing():
            if self._started is not None and not self._announced:
                self._announced = True
                seconds = self._clock() - self._started
                self._say(f"numba's parallel kernels for this run are ready ({seconds:.0f} s); "
                          "switched to them")
            if self.ready.issuperset(self.host_set):
                self._finish()
        elif self.failed is None:
            self._started = self._started or self._clock()
            self._start_child(self.missing(), background=False)

    def _read_record(self, force: bool = False) -> None:
        stamp = jit_ready.stamp(self.folder)
        if force or stamp != self._stamp:
            self._stamp = stamp
            self.ready = jit_ready.read(self.folder, self.ident)

    def _start_child(self, names: list[str], background: bool) -> subprocess.Popen | None:
        """A child compiling ``names``; None (and no other child, said once) if it cannot start."""
        try:
            child = self._spawn(names, self.folder, background=background)
        except (OSError, ValueError) as exc:
            self._give_up(f"it could not start: {exc}")
            return None
        self._given = set(names)
        if not background:
            self.child = child
        return child

    def _give_up(self, why: str) -> None:
        """No more children: the run carries on with the prebuilt kernels for what is missing."""
        self.failed = why
        self._say(f"compiling numba's kernels in the background failed ({why}; see "
                  f"{self.folder / LOG_FILE}); running on the prebuilt kernels")

    def start_before_exit(self) -> None:
        """At exit: a child (at low priority, outliving this process) for what is still missing of
        the builds used and the float32 set, so the next run finds the cache warm. A child still
        running waits for it (the ready file's lock) and then skips what it did."""
        if self.complete or self.failed is not None:
            return
        missing = self.missing(whole_set=True)
        child = self._start_child(missing, background=True) if missing else None
        if child is not None:
            self._say(f"numba goes on compiling {len(missing)} kernel builds in the background (pid "
                      f"{child.pid}, about a minute, once; log: {self.folder / LOG_FILE})")

    def missing(self, whole_set: bool = False) -> list[str]:
        """The builds used that are not ready; with ``whole_set``, then the rest of the float32 set."""
        first = sorted(self.used - self.ready)
        if not whole_set:
            return first
        done = self.ready | self.used
        rest = [name for name in jit_ready.dtype_set("f4") if name not in done]
        return first + rest

    def _finish(self) -> None:
        if not self.complete:
            self.complete = True
            self._on_complete()


def host_builds(jit: dict) -> list[str]:
    """The float32 builds of the kernels in ``jit`` (and their float-free ones)."""
    return [name for name in jit_ready.dtype_set("f4") if name.partition(":")[0] in jit]


def install(host, jit_module, threads) -> TieredKernels | None:
    """Give a cold ``numba`` backend (``host``, a ``NumbaHost`` on ``jit_module``) the tiered
    namespace; None (the host unchanged) when the cache is warm, ``FASTCNN_COLD_START=compile``
    is set, or there is no usable prebuilt build for this CPU."""
    if cold_start_mode() != "prebuilt":
        return None
    from . import jit_warm

    # the kernels the host calls (batch norm's and the masks' run from their own modules)
    jit = {name: getattr(jit_module, name) for name in aot.KERNELS if hasattr(jit_module, name)}
    folder = jit_warm.cache_folder(jit)
    ident = jit_ready.identity()
    needed = host_builds(jit)
    ready = jit_ready.read(folder, ident)
    if ready.issuperset(needed):
        return None  # warm
    found = jit_warm.cached(jit, [name for name in needed if name not in ready])
    if found:  # compiled by an earlier process in place: recorded, so the next start reads one file
        try:
            with jit_ready.locked(folder, wait=False):  # a child compiling holds it: no waiting here
                ready = jit_ready.add(folder, ident, found)
        except OSError:
            ready |= set(found)
        if ready.issuperset(needed):
            return None  # warm
    problem, _ = aot.build_problem()
    if problem is not None:
        return None
    try:
        prebuilt = aot.load(threads)
    except ImportError:
        return None
    if bool(prebuilt.wide) != bool(host.wide):
        return None

    def on_complete():
        host.k = jit_module

    tiers = TieredKernels(prebuilt, jit, folder, ident, on_complete)
    host.k = tiers
    return tiers
