"""Compile numba's parallel kernels into its cache, in a process of their own.

Usage: ``python -m fastcnn.kernels.jit_warm [KEY ...]`` with keys such as
``_conv_fwd:f4`` (``jit_ready.key``); no keys: every float32 build. A cold ``numba``
backend starts this in the background (``fastcnn.kernels.tiered``), at low priority;
it can also be run by hand, e.g. after an install, so that no run waits for it.

Each build is compiled with the exact argument types the backend calls it with
(``aot.signature``), so a later call finds it in numba's cache; it is then recorded
in the ready file (``jit_ready``). One such process compiles at a time per cache
(the ready file's lock); another one waiting for it skips what it finds done.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

from . import aot, jit_ready

#: niceness of a background compile: the training beside it goes first
BACKGROUND_NICE = 10


def dispatchers():
    """kernel name -> numba dispatcher, every kernel of ``aot.KERNELS`` (caches guarded)."""
    from . import numba_safety

    modules = {name: importlib.import_module(f".{name}", __package__)
               for name in {*aot.KERNEL_MODULES.values(), "numba_kernels"}}
    numba_safety.load_tbb()
    numba_safety.guard_caches(__package__)  # after the imports: it guards the loaded modules' kernels
    return {kernel: getattr(modules[aot.KERNEL_MODULES.get(kernel, "numba_kernels")], kernel)
            for kernel in aot.KERNELS}


def cache_folder(kernels: dict) -> Path:
    """The folder numba caches fastcnn's kernels in (every kernel module shares it)."""
    return Path(next(iter(kernels.values()))._cache._cache_path)


def argument_types(kernel: str, code: str | None) -> tuple:
    """The numba types of one build's arguments, as ``typeof`` gives them for the backend's calls."""
    from numba.core import sigutils

    args, _ = sigutils.normalize_signature(aot.signature(kernel, code))
    return tuple(args)


def cached(kernels: dict, names) -> list[str]:
    """Those of ``names`` already in numba's cache (compiled in some process, e.g. by a run with
    ``FASTCNN_COLD_START=compile``), read from numba's cache indexes; a name it cannot tell
    counts as not cached."""
    found = []
    indexes = {}
    for name in names:
        kernel, code = jit_ready.split_key(name)
        dispatcher = kernels[kernel]
        try:
            cache = dispatcher._cache
            if kernel not in indexes:
                indexes[kernel] = cache._cache_file._load_index()
            key = cache._index_key(argument_types(kernel, code), dispatcher.targetctx.codegen())
            if key in indexes[kernel]:
                found.append(name)
        except Exception:  # noqa: BLE001 - numba's private cache layout: unknown means compile
            continue
    return found


def compile_builds(names, out=None, holding: Path | None = None) -> list[str]:
    """Compile every build in ``names`` not yet recorded ready, recording each; the names compiled.
    ``out``: where a line per build goes (default: ``sys.stdout`` as it is at the call).
    ``holding``: the cache folder whose lock the caller already holds (else it is taken here)."""
    out = sys.stdout if out is None else out
    for name in names:
        jit_ready.split_key(name)  # a bad name fails before anything compiles
    kernels = dispatchers()
    folder = cache_folder(kernels)
    if holding is not None and Path(holding).resolve() != folder.resolve():
        raise RuntimeError(f"numba caches fastcnn's kernels in {folder}, not in {holding}")
    ident = jit_ready.identity()
    done = []
    with contextlib.nullcontext() if holding is not None else jit_ready.locked(folder):
        ready = jit_ready.read(folder, ident)
        for name in names:
            if name in ready:
                continue
            kernel, code = jit_ready.split_key(name)
            start = time.perf_counter()
            kernels[kernel].compile(argument_types(kernel, code))
            ready = jit_ready.add(folder, ident, [name])
            done.append(name)
            print(f"{name} {time.perf_counter() - start:.1f} s", file=out, flush=True)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*",
                        help="builds to compile, e.g. _conv_fwd:f4 (default: every float32 build)")
    parser.add_argument("--background", action="store_true", help=f"run at niceness +{BACKGROUND_NICE}")
    parser.add_argument("--folder", type=Path,
                        help="numba's cache folder of the kernels (as the backend found it): its lock is "
                             "taken before numba is imported, so a child waiting for another one stays small")
    args = parser.parse_args(argv)
    if args.background and hasattr(os, "nice"):
        os.nice(BACKGROUND_NICE)
    names = args.keys or jit_ready.dtype_set("f4")
    try:
        for name in names:
            jit_ready.split_key(name)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    try:
        if args.folder is None:
            done = compile_builds(names)
        else:
            with jit_ready.locked(args.folder):
                done = compile_builds(names, holding=args.folder)
    except RuntimeError as exc:
        print(f"fastcnn: {exc}", file=sys.stderr)
        return 1
    print(f"fastcnn: {len(done)} kernel builds compiled in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
