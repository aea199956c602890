"""Build the ``numba-aot`` backend: compile the numba kernels ahead of time for this CPU.

Usage: ``python -m fastcnn.kernels.aot_build`` (``make aot`` runs it). Needs numba,
setuptools and a C compiler at build time; the result needs only NumPy.

Every (kernel, dtype) of ``fastcnn.kernels.aot.KERNELS`` is compiled by numba's
``pycc`` from the same Python functions the JIT backend runs, with
``target_cpu="host"`` (pycc's default, generic x86-64, has no AVX). The module
is compiled in a temporary directory and moved into the package (or
``FASTCNN_AOT_DIR``) only when the build succeeded; the build-info file,
written last, is what marks it usable.
The exports release the GIL, so ``aot`` can cut each call over several threads.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import aot

#: numba versions this build is tested with, as [first, stop): pycc is pending deprecation
#: upstream and the build swaps one of its classes (``_releasing_the_gil``); docs/numba_aot.md
TESTED_NUMBA = ((0, 59), (0, 69))


def numba_version_problem(version: str) -> str | None:
    """Why the build should not trust numba ``version`` (None when it is a tested one)."""
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    first, stop = TESTED_NUMBA
    if len(parts) == 2 and first <= parts < stop:
        return None
    return (f"numba {version} is not among the versions this build is tested with "
            f"({first[0]}.{first[1]} up to {stop[0]}.{stop[1]}, not included; numba.pycc is pending "
            "deprecation upstream, see docs/numba_aot.md); build anyway with --any-numba")


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


def _null_pointer(library, name):
    library._ensure_finalized()  # the optimized IR, which the build links
    return 0


#: what ``_callees_as_ir_only`` replaces: (numba.core module, class, method, stand-in)
_IR_ONLY = (
    ("codegen", "JITCodeLibrary", "_finalize_specific", lambda self: None),  # generates the code
    ("codegen", "JITCodeLibrary", "get_pointer_to_function", _null_pointer),  # generates it on demand
    ("codegen", "JITCPUCodegen", "set_env", lambda self, env_name, env: None),  # looks up a global: too
    ("caching", "Cache", "_save_overload", lambda self, sig, data: None),  # saves the code
)


@contextlib.contextmanager
def _callees_as_ir_only():
    """Compile the exports' callees to optimized LLVM IR only, not also to machine code.

    pycc compiles each callee (a register block, a per-image helper, numba's own ``np.empty``)
    through its JIT dispatcher, which optimizes the callee's IR, then also generates JIT
    machine code for it and saves that in the on-disk cache. The build links only the IR;
    the machine code took about 5 s of a part's 30 s (docs/numba_aot.md). Meanwhile the steps
    of ``_IR_ONLY`` do nothing: the callees' new overloads have null function pointers and
    cannot run, so only a child process that builds one part and exits uses this
    (``build_part(..., ir_only=True)``). A numba without one of those methods builds as before.
    """
    import numba

    targets = []
    for module, owner, method, stand_in in _IR_ONLY:
        cls = getattr(importlib.import_module(f"numba.core.{module}"), owner, None)
        if not callable(getattr(cls, method, None)):
            yield  # another numba: compile the machine code too
            return
        targets.append((cls, method, stand_in))
    numba.njit(lambda: 0)()  # numba's runtime compiles and links its own helpers first, normally
    plain = [(cls, method, getattr(cls, method)) for cls, method, _ in targets]
    try:
        for cls, method, stand_in in targets:
            setattr(cls, method, stand_in)
        yield
    finally:
        for cls, method, original in plain:
            setattr(cls, method, original)


def _import_pycc():
    """numba's pycc compiler class; its pending-deprecation warning is shown once, on stderr, by
    the building process (a part's child process keeps it quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("once", PendingDeprecationWarning)  # shown, once
        warnings.simplefilter("once", DeprecationWarning)
        from numba.pycc import CC
    return CC


def build_part(part: str, output_dir: Path, verbose: bool = False, ir_only: bool = False) -> Path:
    """Compile the builds of one part of the build (``aot.PARTS``) into ``output_dir``; the file.

    ``ir_only`` skips the callees' JIT machine code (``_callees_as_ir_only``): for a process
    that exits after the build.
    """
    CC = _import_pycc()
    name = aot.PARTS[part]
    cc = CC(name)
    cc.output_dir = str(output_dir)
    cc.target_cpu = "host"
    cc.verbose = verbose
    for kernel, code in aot.builds():
        if aot.part_of(code) != part:
            continue
        home = aot.KERNEL_MODULES.get(kernel, "numba_kernels")
        module = importlib.import_module(f".{home}", __package__)
        function = getattr(module, kernel).py_func
        cc.export(aot.export_name(kernel, code), aot.signature(kernel, code))(function)
    with _releasing_the_gil(), _callees_as_ir_only() if ir_only else contextlib.nullcontext():
        cc.compile()
    (built,) = Path(output_dir).glob(f"{name}.*")
    return built


def _start_part(part: str, output_dir: Path, verbose: bool) -> subprocess.Popen:
    """Build one part in a child process (the parts compile side by side, one core each)."""
    args = [sys.executable, "-W", "ignore::PendingDeprecationWarning", "-m", f"{__package__}.aot_build",
            "--part", part, "--output", str(output_dir), "--any-numba"] + (["--verbose"] if verbose else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def build(verbose: bool = False, any_numba: bool = False) -> dict:
    """Compile every build of ``aot.KERNELS`` into the package, a part per process (``aot.PARTS``);
    return the build info written.

    numba's pending-deprecation warning for pycc is shown once, on stderr.
    """
    import numba
    from llvmlite import binding

    problem = numba_version_problem(numba.__version__)
    if problem and not any_numba:
        raise RuntimeError(problem)
    _import_pycc()

    from . import numba_kernels

    aot.BUILD_INFO.parent.mkdir(parents=True, exist_ok=True)
    aot.remove_build()
    start = time.perf_counter()
    first, *others = aot.PARTS
    with tempfile.TemporaryDirectory(dir=aot.BUILD_INFO.parent) as tmp:
        children = {}
        try:
            for part in aot.PARTS:
                children[part] = _start_part(part, Path(tmp), verbose)
            reports = {part: child.communicate() for part, child in children.items()}
        except BaseException:  # a part that cannot start, or an interrupt: no child outlives the build
            for child in children.values():
                child.kill()
                child.wait()
            raise
        built = {}
        for part, child in children.items():
            report = reports[part][0] or ""
            if child.returncode != 0:
                tail = " ".join(report.strip().splitlines()[-3:])
                raise RuntimeError(f"building the {part} part failed (exit status {child.returncode}): "
                                   f"{tail}")
            (built[part],) = Path(tmp).glob(f"{aot.PARTS[part]}.*")
        files = {}
        # the first part keeps its name; the others become _numba_aot.<part>.<suffix>
        for part, path in built.items():
            target = aot.BUILD_INFO.parent / (path.name if part == first else
                                              f"{aot.MODULE}.{part}{path.name[len(aot.PARTS[part]):]}")
            os.replace(path, target)
            files[part] = {"module": target.name, "module_sha256": aot.file_digest(target)}
    features = binding.get_host_cpu_features()
    info = {
        "cpu": binding.get_host_cpu_name(),
        "features": sorted(name for name, on in features.items() if on),
        "wide": bool(numba_kernels._WIDE),
        "numba": numba.__version__,
        "source_sha256": aot.source_digest(),
        # a truncated module would crash its importer: each file's digest is checked first
        **files[first],
        "parts": {part: files[part] for part in others},
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
    parser.add_argument("--any-numba", action="store_true",
                        help="build with a numba version the build is not tested with")
    parser.add_argument("--part", choices=list(aot.PARTS), help=argparse.SUPPRESS)  # a child of the build
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:  # a child of ``build``: it exits after this part
        from . import numba_safety

        numba_safety.COMPILE_NOTICE.enabled = False  # pycc compiles through numba: the build reports itself
        build_part(args.part, args.output, args.verbose, ir_only=True)
        return 0
    print(f"fastcnn: compiling {len(aot.builds())} kernel builds ahead of time, {len(aot.PARTS)} parts "
          "side by side (about 25 s on 2 cores)...", flush=True)
    try:
        info = build(args.verbose, args.any_numba)
    except Exception as exc:  # noqa: BLE001 - any failure: say so, leave no build behind
        aot.remove_build()
        print(f"fastcnn: numba-aot build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"fastcnn: numba-aot kernels built for {info['cpu']} in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
