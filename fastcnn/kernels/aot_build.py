"""Build the ``numba-aot`` backend: compile the numba kernels ahead of time for this CPU.

Usage: ``python -m fastcnn.kernels.aot_build`` (``make aot`` runs it). Needs numba,
setuptools and a C compiler at build time; the result needs only NumPy.

Every (kernel, dtype) of ``fastcnn.kernels.aot.KERNELS`` is compiled by numba's
``pycc`` from the same Python functions the JIT backend runs, with
``target_cpu="host"`` (pycc's default, generic x86-64, has no AVX). The module
is compiled in a temporary directory and moved into the package only when the
build succeeded; the build-info file, written last, is what marks it usable.
The exports release the GIL, so ``aot`` can cut each call over several threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import aot


@contextlib.contextmanager
def _releasing_the_gil():
    """Compile the exports' Python wrappers as ``@njit(nogil=True)`` would: release the GIL.

    pycc has no option for it; its compiler builds each export with a fresh
    ``Flags()``, so for the duration of the build that class is swapped for one
    with ``release_gil`` set. Then ``aot.CheckedKernel`` can run pieces of a call
    on several threads. The kernels touch no Python object.
    """
    from numba.pycc import compiler

    plain = compiler.Flags

    class ReleaseGil(plain):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = ReleaseGil
    try:
        yield
    finally:
        compiler.Flags = plain


def build(verbose: bool = False) -> dict:
    """Compile every build of ``aot.KERNELS`` into the package; return the build info written."""
    with warnings.catch_warnings():  # pycc is pending deprecation upstream; it still works
        warnings.simplefilter("ignore")
        import numba
        from llvmlite import binding
        from numba.pycc import CC

    from . import numba_kernels

    aot.remove_build()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=aot.PACKAGE_DIR) as tmp:
        cc = CC(aot.MODULE)
        cc.output_dir = tmp
        cc.target_cpu = "host"
        cc.verbose = verbose
        for kernel, code in aot.builds():
            function = getattr(numba_kernels, kernel).py_func
            cc.export(aot.export_name(kernel, code), aot.signature(kernel, code))(function)
        with warnings.catch_warnings(), _releasing_the_gil():
            warnings.simplefilter("ignore")
            cc.compile()
        (built,) = Path(tmp).glob(f"{aot.MODULE}.*")
        os.replace(built, aot.PACKAGE_DIR / built.name)
    features = binding.get_host_cpu_features()
    info = {
        "cpu": binding.get_host_cpu_name(),
        "features": sorted(name for name, on in features.items() if on),
        "wide": bool(numba_kernels._WIDE),
        "numba": numba.__version__,
        "source_sha256": aot.source_digest(),
        "kernels": [list(b) for b in aot.builds()],
        "seconds": round(time.perf_counter() - start, 1),
    }
    tmp_info = aot.BUILD_INFO.with_suffix(".json.tmp")
    tmp_info.write_text(json.dumps(info, indent=1))
    os.replace(tmp_info, aot.BUILD_INFO)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print pycc's compile steps")
    args = parser.parse_args(argv)
    print(f"fastcnn: compiling {len(aot.builds())} kernel builds ahead of time (about a minute)...",
          flush=True)
    try:
        info = build(args.verbose)
    except Exception as exc:  # noqa: BLE001 - any failure: say so, leave no build behind
        aot.remove_build()
        print(f"fastcnn: numba-aot build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"fastcnn: numba-aot kernels built for {info['cpu']} in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
