"""The numba kernels compiled ahead of time: the export table, and loading the built module.

``python -m fastcnn.kernels.aot_build`` compiles every kernel of
``numba_kernels`` that ``NumbaHost`` calls, in float32 and float64, for this
CPU, into the extension module ``fastcnn.kernels._numba_aot`` (numba's
``pycc``; it needs a C compiler). Loading that module needs only NumPy: no
numba, no LLVM, no compile step, so a process using the ``numba-aot``
backend stays small (docs/performance.md) and starts at once.

pycc builds no parallel loops, so threads come from here: each call is cut
along its batch into contiguous pieces run on ``workers``' threads (the builds
release the GIL). And pycc's exports do not check their arguments: a wrong
dtype or layout would read or write the wrong memory. So every call goes
through ``CheckedKernel``, which checks each array against the table below,
picks the float32 or float64 build and cuts the call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import workers

#: the built extension module and the file describing its build
MODULE = "_numba_aot"
#: the build is compiled in parts, one per float code, side by side (one process each); the
#: float32 part also holds the dtype-free kernels. Part -> its module's name (the file of a
#: part other than the first is ``_numba_aot.<part>.<extension suffix>``)
PARTS = {"f4": MODULE, "f8": f"{MODULE}_f8"}
PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_COMMAND = "python -m fastcnn.kernels.aot_build"

#: kernel -> (argument kinds, result kind, split). Kinds: "F<n>" a C-contiguous float
#: array of n dimensions (all of one call share a dtype: float32 or float64), "D<n>" a
#: C-contiguous float64 array whatever that dtype (batch norm's statistics), "I1" a
#: C-contiguous int64 vector, "U<n>" a C-contiguous uint8 array of n dimensions (the
#: fused kernels' ``code``), "i" an int, "f" a float, "b" a bool, "n" the batch index of the
#: call's first item (an int: a cut call's piece gets its own first index); results "void",
#: "F1" or "I1". Kernels without float arrays are built once. ``split`` says how a
#: call is cut into pieces for several threads: (index of the argument whose first
#: axis is the batch, indices of every argument cut along its first axis), the cut
#: arguments having a whole number of rows per batch item (e.g. the im2col matrix:
#: yh*yw rows per image); None: the kernel runs whole. Every such kernel treats its
#: batch items (images, or elements) independently, so results do not depend on the cut
#: (the fused forward's dropout and noise count their elements from "n", so their numbers
#: do not either).
_CONV_BWD = (("F4", "F4", "F2", "i", "i", "i", "i", "F4", "F3", "F2", "b", "b"), "void", (1, (0, 1, 7, 8, 9)))
#: the fused backwards: g_p, code, x, weights, kh, kw, pt, pl, yh, yw, relu, avg, pool window and
#: stride, g_x, gk_part, gb_part, input_grad, wide; the _drop twins take dropout's (drop, mask,
#: scale) after code
_CONV_POOL_BWD = (("F4", "U4", "F4", "F2") + ("i",) * 6 + ("b", "b") + ("i",) * 4
                  + ("F4", "F3", "F2", "b", "b"), "void", (2, (0, 1, 2, 16, 17, 18)))
_CONV_POOL_BWD_DROP = (("F4", "U4", "b", "U4", "f", "F4", "F2") + ("i",) * 6 + ("b", "b") + ("i",) * 4
                       + ("F4", "F3", "F2", "b", "b"), "void", (5, (0, 1, 3, 5, 19, 20, 21)))
#: the fused forward: x, offs, wt, b, kh, kw, pt, pl, yh, yw, blocked, five, relu, avg, pool window and
#: stride, y, code, wide; the _draw twin then the draw (mode, key, first image, p1, p2, mask)
_CONV_POOL_FWD = (("F4", "I1", "F2", "F1") + ("i",) * 6 + ("b",) * 4 + ("i",) * 4 + ("F4", "U4", "b"), "void",
                  (0, (0, 18, 19)))
_CONV_POOL_FWD_DRAW = (_CONV_POOL_FWD[0] + ("i", "i", "n", "f", "f", "U4"), "void", (0, (0, 18, 19, 26)))
KERNELS: dict[str, tuple[tuple[str, ...], str, tuple[int, tuple[int, ...]] | None]] = {
    "_tap_offsets": (("i", "i", "i", "i", "i"), "I1", None),
    "_conv_fwd": (("F4", "F2", "F1", "i", "i", "i", "i", "F4"), "void", (0, (0, 7))),
    "_conv_fwd_blocked": (("F4", "I1", "F2", "F1", "i", "i", "i", "i", "F4", "b", "b"), "void", (0, (0, 8))),
    "_conv_bwd": _CONV_BWD,
    "_conv_bwd_c1": _CONV_BWD,
    "_conv_pool_fwd": _CONV_POOL_FWD,
    "_conv_pool_fwd_draw": _CONV_POOL_FWD_DRAW,
    "_conv_pool_bwd": _CONV_POOL_BWD,
    "_conv_pool_bwd_c1": _CONV_POOL_BWD,
    "_conv_pool_bwd_drop": _CONV_POOL_BWD_DROP,
    "_conv_pool_bwd_drop_c1": _CONV_POOL_BWD_DROP,
    "_sum_batch": (("F2",), "F1", None),
    # a conv's weights in the kernels' layouts, and its g_k / g_b from the per-image partials
    "_tap_weights": (("F4", "F1", "F2", "F1"), "void", None),
    "_flipped_weights": (("F4", "F2"), "void", None),
    "_c1_weights": (("F4", "F2"), "void", None),
    "_sum_parts": (("F3", "F2", "b", "F4", "F1"), "void", None),
    "_ext_regions": (("F4",) + ("i",) * 8 + ("F2",), "void", (0, (0, 9))),
    "_undo_ext_regions": (("F2",) + ("i",) * 8 + ("F4",), "void", (9, (0, 9))),
    "_max_fwd": (("F4", "i", "i", "i", "i", "F4"), "void", (0, (0, 5))),
    "_max_bwd": (("F4", "F4", "i", "i", "i", "i", "F4"), "void", (1, (0, 1, 6))),
    "_avg_fwd": (("F4", "i", "i", "i", "i", "F4"), "void", (0, (0, 5))),
    "_avg_bwd": (("F4", "i", "i", "i", "i", "F4"), "void", (5, (0, 5))),
    "_relu": (("F1", "F1"), "void", (0, (0, 1))),
    "_relu_backward": (("F1", "F1", "F1"), "void", (0, (0, 1, 2))),
    "_adam": (("F1", "F1", "F1", "F1", "f", "f", "f", "f"), "void", (0, (0, 1, 2, 3))),
    # batch norm (numba_norm): x2 [n, chn] rows; the sums run whole (their row chunks are fixed)
    "_bn_stats": (("F2", "i", "D1", "D1"), "void", None),
    "_bn_normalize": (("F2", "D1", "D1", "F1", "F1", "b", "F2", "F2"), "void", (0, (0, 6, 7))),
    "_bn_backward": (("F2", "F2", "D1", "D1", "b", "i", "F2", "D2"), "void", None),
    # dropout and noise (numba_random): flat arrays; the draws run whole (element i's number
    # comes from its index in the whole array), the backward is cut
    "_dropout_fwd": (("F1", "i", "f", "f", "F1", "U1"), "void", None),
    "_dropout_bwd": (("F1", "U1", "f", "F1"), "void", (0, (0, 1, 3))),
    "_add_noise": (("F1", "i", "f", "f", "F1"), "void", None),
    # ReLU + dropout / noise (numba_random): a, mode, key, first counter, p1, p2, y, mask; cut,
    # each piece counting from its first element ("n"); its backward g, mask, scale, a, out
    "_relu_draw_fwd": (("F1", "i", "i", "n", "f", "f", "F1", "U1"), "void", (0, (0, 6, 7))),
    "_relu_drop_bwd": (("F1", "U1", "f", "F1", "F1"), "void", (0, (0, 1, 3, 4))),
}
#: kernel -> the module of ``fastcnn.kernels`` that defines it, where not the map ``numba_kernels``
KERNEL_MODULES = {"_bn_stats": "numba_norm", "_bn_normalize": "numba_norm", "_bn_backward": "numba_norm",
                  **dict.fromkeys(("_dropout_fwd", "_dropout_bwd", "_add_noise", "_relu_draw_fwd",
                                   "_relu_drop_bwd"), "numba_random")}
#: calls whose batch argument is smaller than this run whole (handing a piece to a thread costs ~20 us)
MIN_SPLIT_BYTES = 128 * 1024

#: numba type code of each float dtype the kernels are built for
FLOAT_CODES = {np.dtype(np.float32): "f4", np.dtype(np.float64): "f8"}
_SCALAR_CODES = {"i": "i8", "n": "i8", "f": "f8", "b": "b1"}
#: dtype of the non-float array kinds
_INT_KINDS = {"I": np.dtype(np.int64), "U": np.dtype(np.uint8), "D": np.dtype(np.float64)}

#: LLVM feature name -> /proc/cpuinfo flag, for the features that decide whether
#: code built on one x86 CPU runs on another
_CPUINFO_FLAGS = {
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3", "popcnt": "popcnt", "avx": "avx",
    "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
    "avx512cd": "avx512cd",
}


def has_floats(kinds) -> bool:
    return any(kind.startswith("F") for kind in kinds)


def export_name(kernel: str, code: str | None) -> str:
    """Name of one build of ``kernel`` in the extension module (``code``: "f4"/"f8", None if dtype-free)."""
    return kernel if code is None else f"{kernel}__{code}"


def _type(kind: str, code: str | None) -> str:
    if kind == "void":
        return "void"
    if kind in _SCALAR_CODES:
        return _SCALAR_CODES[kind]
    base = {"F": code, "I": "i8", "U": "u1", "D": "f8"}[kind[0]]
    dims = int(kind[1:])
    return f"{base}[{', '.join([':'] * (dims - 1) + ['::1'])}]"


def signature(kernel: str, code: str | None) -> str:
    """pycc signature of one build, e.g. ``void(f4[:, ::1], i8)``."""
    kinds, result, _ = KERNELS[kernel]
    return f"{_type(result, code)}({', '.join(_type(k, code) for k in kinds)})"


def part_of(code: str | None) -> str:
    """The part of the build that holds a build of float code ``code`` (dtype-free: the first)."""
    return code or next(iter(PARTS))


def builds() -> list[tuple[str, str | None]]:
    """Every (kernel, float code or None) the extension module holds."""
    out = []
    for kernel, (kinds, _, _) in KERNELS.items():
        codes = list(FLOAT_CODES.values()) if has_floats(kinds) else [None]
        out += [(kernel, code) for code in codes]
    return out


class CheckedKernel:
    """One kernel of the built module: checks its arguments, then calls the build for their dtype,
    cut into pieces over ``threads()`` threads where the table allows (the builds release the GIL)."""

    def __init__(self, name: str, kinds: tuple[str, ...], split, by_dtype: dict, threads):
        self.name, self.kinds, self.split, self.by_dtype, self.threads = name, kinds, split, by_dtype, threads

    def __call__(self, *args):
        if len(args) != len(self.kinds):
            raise TypeError(f"{self.name} takes {len(self.kinds)} arguments, got {len(args)}")
        dtype = None
        for i, (kind, arg) in enumerate(zip(self.kinds, args, strict=True)):
            if kind[0] not in "FIUD":
                continue
            dims = int(kind[1:])
            if not isinstance(arg, np.ndarray) or arg.ndim != dims or not arg.flags.c_contiguous:
                got = f"{arg.ndim}-d {arg.dtype} array, C-contiguous: {arg.flags.c_contiguous}" \
                    if isinstance(arg, np.ndarray) else type(arg).__name__
                raise TypeError(f"{self.name}: argument {i} must be a C-contiguous {dims}-d array, got {got}")
            want = _INT_KINDS.get(kind[0], dtype or arg.dtype)
            if arg.dtype != want:
                raise TypeError(f"{self.name}: argument {i} has dtype {arg.dtype}, expected {want}")
            if kind[0] == "F":
                dtype = want
        fn = self.by_dtype.get(dtype)
        if fn is None:
            raise TypeError(f"{self.name}: not built for dtype {dtype} (built: float32, float64)")
        pieces = self._pieces(args)
        if len(pieces) == 1:
            return fn(*args)
        workers.run([lambda piece=piece: fn(*piece) for piece in pieces])
        return None

    def _pieces(self, args) -> list[tuple]:
        """The calls to make: ``args`` itself, or one call per contiguous block of the batch."""
        if self.split is None:
            return [args]
        batch_arg, cut = self.split
        batch = args[batch_arg].shape[0]
        threads = min(self.threads(), batch)
        if threads < 2 or args[batch_arg].nbytes < MIN_SPLIT_BYTES:
            return [args]
        rows = {}
        for i in cut:
            if args[i].shape[0] % batch:
                raise TypeError(f"{self.name}: argument {i} has {args[i].shape[0]} rows, "
                                f"not a multiple of the batch ({batch})")
            rows[i] = args[i].shape[0] // batch
        bounds = [batch * t // threads for t in range(threads + 1)]
        return [tuple(arg[lo * rows[i] : hi * rows[i]] if i in rows else arg + lo if kind == "n" else arg
                      for i, (kind, arg) in enumerate(zip(self.kinds, args, strict=True)))
                for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


class CompiledKernels:
    """The namespace ``NumbaHost`` calls: one ``CheckedKernel`` per entry of ``KERNELS``.

    ``threads``: returns how many threads a call may be cut over.
    """

    def __init__(self, module, info: dict, threads):
        self.info = info
        self.wide = bool(info["wide"])
        for kernel, (kinds, _, split) in KERNELS.items():
            if has_floats(kinds):
                by_dtype = {dtype: getattr(module, export_name(kernel, code))
                            for dtype, code in FLOAT_CODES.items()}
            else:
                by_dtype = {None: getattr(module, export_name(kernel, None))}
            setattr(self, kernel, CheckedKernel(kernel, kinds, split, by_dtype, threads))


def _cpu_flags() -> set[str] | None:
    """This CPU's feature flags from /proc/cpuinfo (None where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_problem(info: dict) -> str | None:
    """Why code built with ``info``'s CPU features cannot run on this CPU, or None if it can."""
    flags = _cpu_flags()
    if flags is None:
        return None
    missing = sorted(f for f in info["features"] if f in _CPUINFO_FLAGS and _CPUINFO_FLAGS[f] not in flags)
    if missing:
        return f"built for a {info['cpu']} CPU with {', '.join(missing)}, which this CPU lacks"
    return None


def source_digest() -> str:
    """SHA-256 of every kernel module (the map ``numba_kernels.py``, the modules it
    re-exports from and those of ``KERNEL_MODULES``, as in the Makefile's ``AOT_SOURCES``)
    and this table: a build from other sources is stale."""
    digest = hashlib.sha256()
    for name in ("numba_kernels.py", "numba_simd.py", "numba_blocks.py", "numba_conv_fwd.py",
                 "numba_conv_bwd.py", "numba_pool.py", "numba_elementwise.py", "numba_fused.py",
                 "numba_norm.py", "numba_random.py", "aot.py"):
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_dir() -> Path:
    """The folder of the build: ``FASTCNN_AOT_DIR`` when set (e.g. for a read-only install),
    else the package's own folder."""
    return Path(os.environ.get("FASTCNN_AOT_DIR") or PACKAGE_DIR)


BUILD_INFO = build_dir() / f"{MODULE}.json"


def module_paths() -> list[Path]:
    """The files of a build (extension module and build info) beside ``BUILD_INFO``."""
    return sorted(BUILD_INFO.parent.glob(f"{MODULE}.*"))


def remove_build() -> None:
    """Delete a previous build (used before rebuilding, so a failed build leaves none behind)."""
    for path in module_paths():
        if path.is_file():
            os.remove(path)


def build_problem() -> tuple[str | None, dict | None]:
    """``(why the build cannot be used or None, its build info)``; ``"not built"`` when there is none."""
    extensions = [p for p in module_paths() if p != BUILD_INFO and p.suffix in (".so", ".pyd")]
    if not BUILD_INFO.exists():
        return ("not built" if not extensions else "incomplete (a build info file is missing)"), None
    try:
        info = json.loads(BUILD_INFO.read_text())
        info["features"], info["cpu"]  # noqa: B018 - the fields every build info has
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"damaged (unreadable build info: {exc})", None
    if info.get("source_sha256") != source_digest():
        return "stale (built from other kernel sources)", info
    for _, file, digest in module_files(info):
        module = BUILD_INFO.parent / str(file)
        if not module.is_file():
            return f"damaged (its extension module {module.name} is missing)", info
        # checked before the import: loading a truncated module can kill the process (SIGBUS)
        if digest != file_digest(module):
            return f"damaged ({module.name} is not the file that was built: truncated or overwritten)", info
    return cpu_problem(info), info


def module_files(info: dict) -> list[tuple[str, str, str]]:
    """``(module name, file name, SHA-256)`` of every part in a build info: the first part's
    ``module``, then ``parts`` (a build from before the parts has only the first)."""
    files = [(MODULE, info.get("module"), info.get("module_sha256"))]
    for part, entry in sorted((info.get("parts") or {}).items()):
        files.append((PARTS.get(part, part), entry.get("module"), entry.get("module_sha256")))
    return files


class _Exports:
    """The exports of every part of a build, as one namespace."""

    def __init__(self, modules):
        self._modules = modules

    def __getattr__(self, name: str):
        for module in self._modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"no part of the build exports {name}")


def _import_build(info: dict) -> _Exports:
    """Import the checked extension modules named in ``info`` (ImportError if one cannot load)."""
    from importlib import util

    modules = []
    for module_name, file, _ in module_files(info):
        path = BUILD_INFO.parent / file
        spec = util.spec_from_file_location(f"{__package__}.{module_name}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not an extension module")
        module = util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return _Exports(modules)


def rebuild_in_subprocess() -> None:
    """Run ``BUILD_COMMAND`` in a fresh interpreter (numba loads there, not here), passing its
    report on to stderr; ImportError with the build's last lines if it fails."""
    import subprocess
    import sys

    env = {**os.environ, "FASTCNN_AOT_DIR": str(BUILD_INFO.parent)}
    proc = subprocess.run([sys.executable, "-m", f"{__package__}.aot_build"], capture_output=True, text=True,
                          env=env, check=False)
    sys.stderr.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ImportError(f"rebuilding failed: {tail}")


def _kernels(info: dict, threads) -> CompiledKernels:
    module = _import_build(info)
    try:
        return CompiledKernels(module, info, threads)
    except AttributeError as exc:  # a build of another export table
        raise ImportError(f"the numba-aot build lacks a kernel ({exc})") from None


def load(threads, rebuild=rebuild_in_subprocess) -> CompiledKernels:
    """The built kernels for this CPU. A damaged, stale or foreign build is discarded and rebuilt
    (``rebuild``, with one warning); ImportError saying how to build when there is none.

    ``threads``: returns the thread count calls are cut over (read at every call).
    """
    import fcntl
    import sys
    import warnings

    problem, info = build_problem()
    if problem == "not built":
        raise ImportError(f"the numba-aot backend is not built; build it with `{BUILD_COMMAND}` "
                          "(or `make aot`; needs a C compiler)")
    if problem is None:
        try:
            return _kernels(info, threads)
        except ImportError as exc:  # e.g. a truncated module file: "file too short"
            problem = f"damaged ({exc})"
    with open(BUILD_INFO.parent / f".{MODULE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one rebuild at a time; another process may have done it
        again, info = build_problem()
        if again is None:
            with contextlib.suppress(ImportError):
                return _kernels(info, threads)
        warnings.warn(f"fastcnn: the numba-aot build in {BUILD_INFO.parent} is {problem}; discarded it and "
                      "rebuilding it for this CPU (about a minute, once)", RuntimeWarning, stacklevel=3)
        print("fastcnn: rebuilding the numba-aot kernels...", file=sys.stderr, flush=True)
        remove_build()
        try:
            rebuild()
            again, info = build_problem()
            if again is not None:
                raise ImportError(f"the new build is {again}")
            return _kernels(info, threads)
        except ImportError as exc:
            raise ImportError(f"the numba-aot build was {problem}, and rebuilding it failed ({exc}). "
                              f"Build it by hand with `{BUILD_COMMAND}` (or `make aot`; needs a C compiler)"
                              ) from None
