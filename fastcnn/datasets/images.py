"""Folders of JPEG/PNG images -> one uint8 array, decoded once and cached.

Files are decoded with Pillow and converted to RGB (grayscale, palette, RGBA
- alpha dropped -, CMYK ...). A file that cannot be decoded is skipped, not
fatal; ``load_folders`` reports skipped, ignored and converted files and
class folders left empty in a ``LoadReport`` and one warning.

The decoded pixels of a file list are stored as an ``.npz`` in a cache folder
(default: ``.fastcnn_cache`` inside the dataset folder), keyed by a checksum of
the sorted relative paths, their sizes and mtimes, and the resolution. Any
change to the files gives a new key, so a stale cache is never read. The cache
also keeps each file's original mode and decode error, so a cached load
reports the same skips and conversions. It is written atomically
(``fastcnn.atomic``); a damaged cache is removed and rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, named_error

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
CACHE_DIRNAME = ".fastcnn_cache"
#: part of the cache key: bump when the cache's content changes, so older caches are never read
CACHE_VERSION = 2
#: show a progress bar when decoding at least this many files (and stderr is a terminal)
PROGRESS_MIN = 200
#: how many file names a warning lists before "... and N more"
NAMES_SHOWN = 10
#: what ``np.load`` of a damaged .npz raises (truncated, garbage bytes, flipped bits)
CACHE_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, NotImplementedError)


def resolution_pair(resolution) -> tuple[int, int]:
    """``96`` or ``(96, 96)`` -> ``(height, width)``, both positive."""
    pair = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"resolution must be a positive int or (height, width), got {resolution!r}")
    return int(pair[0]), int(pair[1])


def subfolders(folder: Path) -> list[Path]:
    """Visible subfolders, sorted by name (the cache folder is hidden)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """``(candidates, ignored)``: files directly in ``folder`` with an image suffix, and the
    other files (``notes.txt``, hidden ones like ``.DS_Store``), both sorted. Subfolders
    are not looked into."""
    candidates, ignored = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        image = path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        (candidates if image else ignored).append(path)
    return candidates, ignored


def require_folder(folder, layout: str) -> Path:
    """Return ``folder`` as a Path, or raise naming it and the expected layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset folder {folder} does not exist; expected layout: {layout} "
            "(fastcnn never downloads data)"
        )
    return folder


def cache_key(root: Path, files: list[Path], resolution: tuple[int, int]) -> str:
    """Checksum of the cache version, relative paths, sizes, mtimes and the resolution."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{resolution[0]}x{resolution[1]}".encode())
    for path in files:
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        digest.update(f"\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def decode_image(path: Path, resolution: tuple[int, int]) -> tuple[np.ndarray, str]:
    """One image as RGB uint8 ``[h, w, 3]`` resized to ``resolution``, and its original
    Pillow mode (``"RGB"``, ``"L"``, ``"P"``, ``"CMYK"`` ...); ValueError if unreadable."""
    from PIL import Image

    errors = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # the route Pillow asks for; alpha is dropped next
            img = img.convert("RGB").resize((resolution[1], resolution[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8), mode
    except errors as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


@dataclass
class Decoded:
    """Pixels ``[k, h, w, 3]`` of the readable files among ``n``, in order; per file its
    original mode (``""`` if unreadable) and decode error (``""`` if read)."""

    pixels: np.ndarray
    modes: list[str]
    errors: list[str]
    cache_path: Path | None = None


def decode_all(files: list[Path], resolution: tuple[int, int], desc: str = "decoding") -> Decoded:
    """Decode ``files``, skipping unreadable ones, with a tqdm bar on a terminal."""
    from tqdm import tqdm

    out = np.empty((len(files), resolution[0], resolution[1], 3), dtype=np.uint8)
    modes, errors, kept = [], [], 0
    quiet = len(files) < PROGRESS_MIN or not sys.stderr.isatty()
    for path in tqdm(files, desc=desc, unit="img", disable=quiet, leave=False):
        try:
            pixels, mode = decode_image(path, resolution)
        except ValueError as exc:
            cause = exc.__cause__ or exc
            modes.append("")
            errors.append(str(cause) or type(cause).__name__)
            continue
        out[kept] = pixels
        kept += 1
        modes.append(mode)
        errors.append("")
    return Decoded(out if kept == len(files) else out[:kept].copy(), modes, errors)


def _read_cache(path: Path, count: int, resolution: tuple[int, int]) -> Decoded | None:
    """The cached decode of ``count`` files, or None (one warning, file removed) if damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            pixels, modes, errors = data["pixels"], data["modes"], data["errors"]
        problem = cache_problem(pixels, modes, errors, count, resolution)
    except CACHE_ERRORS as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return Decoded(pixels, [str(m) for m in modes], [str(e) for e in errors], path)
    warnings.warn(f"image cache {path} is damaged ({problem}); decoding the images again", stacklevel=5)
    path.unlink(missing_ok=True)
    return None


def cache_problem(pixels, modes, errors, count, resolution) -> str | None:
    """What is wrong with the cached arrays, or None."""
    if modes.shape != (count,) or errors.shape != (count,):
        return f"{count} files but modes {modes.shape} and errors {errors.shape}"
    if modes.dtype.kind != "U" or errors.dtype.kind != "U":
        return f"modes/errors are {modes.dtype}/{errors.dtype}, not text"
    kept = int(np.count_nonzero(modes != ""))
    if pixels.shape != (kept, resolution[0], resolution[1], 3) or pixels.dtype != np.uint8:
        return f"pixels {pixels.dtype}{pixels.shape} do not match {kept} images of {resolution}"
    return None


def _write_cache(path: Path, decoded: Decoded) -> None:
    """Write atomically (``fastcnn.atomic``); on an OSError warn and go on uncached."""
    arrays = {"pixels": decoded.pixels, "modes": np.array(decoded.modes, dtype=str),
              "errors": np.array(decoded.errors, dtype=str)}
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as exc:  # e.g. a full disk: the pixels are decoded, so go on uncached
        error = named_error(exc, f"cannot write image cache {path}")
        warnings.warn(f"{error}; going on without a cache", stacklevel=5)


def load_images(root, files: list[Path], resolution, name: str, cache_dir=None,
                use_cache: bool = True) -> Decoded:
    """Decode ``files`` (all under ``root``) through the cache; ``cache_path`` is None when off."""
    root = Path(root)
    resolution = resolution_pair(resolution)
    if not use_cache:
        return decode_all(files, resolution, desc=name)
    folder = Path(cache_dir) if cache_dir is not None else root / CACHE_DIRNAME
    key = cache_key(root, files, resolution)
    path = folder / f"{name}-{resolution[0]}x{resolution[1]}-{key}.npz"
    if path.is_file():
        cached = _read_cache(path, len(files), resolution)
        if cached is not None:
            return cached
    decoded = decode_all(files, resolution, desc=name)
    _write_cache(path, decoded)
    decoded.cache_path = path
    return decoded


@dataclass
class LoadReport:
    """What a folder load skipped or converted; paths are relative to the dataset folder.

    ``unreadable``: image files that failed to decode -> reason (skipped);
    ``ignored``: files without an image suffix or hidden (``notes.txt``, ``.DS_Store``);
    ``converted``: original mode -> images converted to RGB;
    ``empty_folders``: class folders with no readable image (their classes are kept).
    """

    unreadable: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    converted: dict[str, list[str]] = field(default_factory=dict)
    empty_folders: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.unreadable or self.ignored or self.converted or self.empty_folders)

    def summary(self) -> str:
        """One line: counts and names of everything skipped, ignored, converted or empty."""
        parts = []
        if self.unreadable:
            parts.append(f"skipped {len(self.unreadable)} unreadable files: {_names(list(self.unreadable))}")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} non-image files: {_names(self.ignored)}")
        if self.converted:
            total = sum(len(v) for v in self.converted.values())
            modes = ", ".join(f"{mode}: {len(v)}" for mode, v in sorted(self.converted.items()))
            parts.append(f"converted {total} images to RGB ({modes})")
        if self.empty_folders:
            parts.append(f"{len(self.empty_folders)} empty class folders (kept as classes without "
                         f"samples): {_names(self.empty_folders)}")
        return "; ".join(parts)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} ... and {len(names) - NAMES_SHOWN} more"


@dataclass
class FolderImages:
    """Readable images of a list of class folders: ``pixels[i]`` came from ``files[i]``
    in ``folders[owner[i]]``."""

    pixels: np.ndarray
    owner: np.ndarray
    files: list[Path]
    cache_path: Path | None
    report: LoadReport


def scan_folders(root: Path, folders: list[Path]) -> tuple[list[Path], list[int], list[str]]:
    """``(files, owner, ignored)``: the candidate images directly in each of ``folders``
    (``files[i]`` in ``folders[owner[i]]``) and the other files, relative to ``root``."""
    files, owner, ignored = [], [], []
    for index, folder in enumerate(folders):
        found, skipped = scan_folder(folder)
        files += found
        owner += [index] * len(found)
        ignored += [p.relative_to(root).as_posix() for p in skipped]
    return files, owner, ignored


def summarize(root: Path, folders: list[Path], files: list[Path], owner: list[int], modes, errors,
              ignored: list[str], name: str) -> tuple[list[int], np.ndarray, LoadReport]:
    """``(kept, owner of kept, report)`` from each file's decode mode and error; warn once if
    anything was off, and raise a ValueError naming ``root`` when nothing is readable."""
    report = LoadReport(ignored=list(ignored))
    kept = []
    for i, (path, mode, error) in enumerate(zip(files, modes, errors, strict=True)):
        rel = path.relative_to(root).as_posix()
        if not mode:
            report.unreadable[rel] = error
            continue
        kept.append(i)
        if mode != "RGB":
            report.converted.setdefault(mode, []).append(rel)
    kept_owner = np.asarray(owner, dtype=np.intp)[kept]
    counts = np.bincount(kept_owner, minlength=len(folders))
    report.empty_folders = [folders[i].relative_to(root).as_posix() for i in np.flatnonzero(counts == 0)]
    if not kept:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        example = next(iter(report.unreadable.items()), None)
        detail = f"; e.g. {example[0]}: {example[1]}" if example else ""
        raise ValueError(f"image folder {root} holds no readable images ({kinds}): "
                         f"{report.summary()}{detail}")
    if not report.clean:
        warnings.warn(f"{name} dataset {root}: {report.summary()} (details: .load_report)", stacklevel=5)
    return kept, kept_owner, report


def load_folders(root, folders: list[Path], resolution, name: str, *, cache_dir=None,
                 use_cache: bool = True) -> FolderImages:
    """Decode the images directly in each of ``folders`` (under ``root``), skipping what
    cannot be read, and warn once with the ``LoadReport`` summary if anything was off.

    A ValueError names ``root`` when no image at all is readable.
    """
    root = Path(root)
    files, owner, ignored = scan_folders(root, folders)
    if files:
        decoded = load_images(root, files, resolution, name, cache_dir=cache_dir, use_cache=use_cache)
    else:  # nothing to decode (or cache): the error below says what the folders hold
        decoded = Decoded(np.empty((0, 1, 1, 3), np.uint8), [], [])
    kept, owner, report = summarize(root, folders, files, owner, decoded.modes, decoded.errors, ignored, name)
    return FolderImages(decoded.pixels, owner, [files[i] for i in kept], decoded.cache_path, report)


def to_inputs(pixels: np.ndarray, normalize: bool) -> np.ndarray:
    """uint8 pixels -> float32 inputs, 0..1 when ``normalize`` else the raw 0..255."""
    xs = pixels.astype(np.float32)
    if normalize:
        xs *= np.float32(1 / 255)
    return xs
