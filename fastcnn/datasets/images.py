"""Folders of JPEG/PNG images -> one uint8 array, decoded once and cached.

The decoded pixels of a file list are stored as an ``.npz`` in a cache folder
(default: ``.fastcnn_cache`` inside the dataset folder), keyed by a checksum of
the sorted relative paths, their sizes and mtimes, and the resolution. Any
change to the files gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
CACHE_DIRNAME = ".fastcnn_cache"
#: show a progress bar when decoding at least this many files (and stderr is a terminal)
PROGRESS_MIN = 200


def resolution_pair(resolution) -> tuple[int, int]:
    """``96`` or ``(96, 96)`` -> ``(height, width)``, both positive."""
    pair = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"resolution must be a positive int or (height, width), got {resolution!r}")
    return int(pair[0]), int(pair[1])


def subfolders(folder: Path) -> list[Path]:
    """Visible subfolders, sorted by name (the cache folder is hidden)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; an error if there are none."""
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"image folder {folder} holds no images ({kinds})")
    return files


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
    """Checksum of relative paths, sizes, mtimes and the resolution."""
    digest = hashlib.sha256(f"{resolution[0]}x{resolution[1]}".encode())
    for path in files:
        stat = path.stat()
        rel = path.relative_to(root).as_posix()
        digest.update(f"\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def decode_image(path: Path, resolution: tuple[int, int]) -> np.ndarray:
    """One image as RGB uint8 ``[h, w, 3]`` resized to ``resolution``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((resolution[1], resolution[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def decode_all(files: list[Path], resolution: tuple[int, int], desc: str = "decoding") -> np.ndarray:
    """Decode ``files`` into ``[n, h, w, 3]`` uint8, with a tqdm bar on a terminal."""
    from tqdm import tqdm

    out = np.empty((len(files), resolution[0], resolution[1], 3), dtype=np.uint8)
    quiet = len(files) < PROGRESS_MIN or not sys.stderr.isatty()
    for i, path in enumerate(tqdm(files, desc=desc, unit="img", disable=quiet, leave=False)):
        out[i] = decode_image(path, resolution)
    return out


def _read_cache(path: Path, count: int, resolution: tuple[int, int]) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            pixels = data["pixels"]
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring unreadable image cache {path}: {exc}", stacklevel=3)
        return None
    if pixels.shape != (count, resolution[0], resolution[1], 3) or pixels.dtype != np.uint8:
        warnings.warn(f"ignoring image cache {path}: shape {pixels.shape} does not match", stacklevel=3)
        return None
    return pixels


def _write_cache(path: Path, pixels: np.ndarray) -> None:
    """Write atomically: a temp file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    except OSError as exc:
        warnings.warn(f"cannot write image cache in {path.parent}: {exc}", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, pixels=pixels)
        os.replace(tmp, path)
    except OSError as exc:  # e.g. a full disk: the pixels are decoded, so go on uncached
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"cannot write image cache {path}: {exc}", stacklevel=3)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_images(root, files: list[Path], resolution, name: str, cache_dir=None, use_cache: bool = True):
    """Decoded pixels ``[n, h, w, 3]`` uint8 for ``files`` (all under ``root``), cached.

    Returns ``(pixels, cache_path)``; ``cache_path`` is None when caching is off.
    """
    root = Path(root)
    resolution = resolution_pair(resolution)
    if not use_cache:
        return decode_all(files, resolution, desc=name), None
    folder = Path(cache_dir) if cache_dir is not None else root / CACHE_DIRNAME
    key = cache_key(root, files, resolution)
    path = folder / f"{name}-{resolution[0]}x{resolution[1]}-{key}.npz"
    if path.is_file():
        pixels = _read_cache(path, len(files), resolution)
        if pixels is not None:
            return pixels, path
    pixels = decode_all(files, resolution, desc=name)
    _write_cache(path, pixels)
    return pixels, path


def to_inputs(pixels: np.ndarray, normalize: bool) -> np.ndarray:
    """uint8 pixels -> float32 inputs, 0..1 when ``normalize`` else the raw 0..255."""
    xs = pixels.astype(np.float32)
    if normalize:
        xs *= np.float32(1 / 255)
    return xs
