"""``fastcnn compile``: numba's kernels into its cache now, so that no run waits for them.

A cold cache costs a first run nothing when the prebuilt build is there (the backend
runs it while a child compiles, ``fastcnn.kernels.tiered``); this command does the
compile in the foreground instead, e.g. after an install or in a container image
(``python -m fastcnn.kernels.jit_warm`` does the same). One line per build, then the
total; builds already compiled are skipped.
"""

from __future__ import annotations

import time


def add_compile_parser(sub, process) -> None:
    """``fastcnn compile [BUILD ...] [--float64]``."""
    compile_ = sub.add_parser("compile", parents=[process],
                              help="compile numba's kernels for this CPU into its cache now (every float32 "
                              "build by default), so that no later run waits for them")
    compile_.add_argument("builds", nargs="*", metavar="BUILD",
                          help="kernel builds such as _conv_fwd:f4 (default: every float32 build)")
    compile_.add_argument("--float64", action="store_true", help="the float64 builds too")


def cmd_compile(args) -> int:
    from . import cli  # here: fastcnn.cli imports this module
    from .kernels import jit_ready

    names = list(args.builds) or jit_ready.dtype_set("f4")
    if args.float64:
        names += [name for name in jit_ready.dtype_set("f8") if name not in names]
    for name in names:
        try:
            jit_ready.split_key(name)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from None
    from .kernels import jit_warm

    print(f"fastcnn: compiling {len(names)} kernel builds for this CPU (numba's cache; about 1.5 min "
          "for the float32 set on one core)", flush=True)
    start = time.perf_counter()
    done = jit_warm.compile_builds(names)
    print(f"fastcnn: {len(done)} kernel builds compiled in {time.perf_counter() - start:.1f} s "
          f"({len(names) - len(done)} were compiled already)")
    return 0
