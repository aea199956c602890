"""Image folders read row by row: a process that holds a shard decodes only its own files.

``open_folders`` lists the readable images of some class folders and gives a ``read(rows)``
for their pixels. Whole (``whole=True``, the default of every dataset): everything is
decoded at once through the cache, as ``images.load_folders`` always did. By shard: the
files are only listed (a ``stat`` each), and

- if the decoded cache of the whole file list exists (a whole load wrote it), it says
  which files are readable, and ``read`` copies just those rows out of its ``pixels``
  array, memory-mapped (``np.savez`` stores members uncompressed);
- otherwise every listed image is taken to be readable, ``read`` decodes just those files,
  and a file that cannot be decoded is a ValueError naming it: the train / validation /
  test split is drawn over the readable files, so an unreadable one that a whole load would
  skip changes every index after it. No cache is written for a shard's files (which files
  those are changes with the process count); a whole load writes the cache once.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import images


@dataclass
class FolderRows:
    """Readable images: row ``i`` is ``files[i]`` in folder ``owner[i]``; ``read(rows)`` gives
    their uint8 pixels ``[len(rows), h, w, 3]``; ``read_files``: every file read so far."""

    files: list[Path]
    owner: np.ndarray
    report: images.LoadReport
    cache_path: Path | None
    read: Callable[[np.ndarray], np.ndarray]
    read_files: list[Path] = field(default_factory=list)


def open_folders(root, folders: list[Path], resolution, name: str, *, cache_dir=None, use_cache: bool = True,
                 whole: bool = True) -> FolderRows:
    """The readable images of ``folders`` (under ``root``): decoded at once when ``whole``, else
    read only when asked for (module docstring). Warnings and errors as ``load_folders``."""
    root = Path(root)
    if whole:
        loaded = images.load_folders(root, folders, resolution, name, cache_dir=cache_dir,
                                     use_cache=use_cache)
        rows = FolderRows(loaded.files, loaded.owner, loaded.report, loaded.cache_path,
                          lambda r: loaded.pixels[r])
        rows.read_files = list(loaded.files)
        return rows
    resolution = images.resolution_pair(resolution)
    files, owner, ignored = images.scan_folders(root, folders)
    cached = _cached(root, files, resolution, name, cache_dir) if use_cache and files else None
    if cached is not None:
        path, pixels, modes, errors = cached
        kept, owner, report = images.summarize(root, folders, files, owner, modes, errors, ignored, name)
        rows = FolderRows([files[i] for i in kept], owner, report, path, lambda r: np.array(pixels[r]))
    else:
        assumed = ["RGB"] * len(files)  # corrected per file as it is decoded
        kept, owner, report = images.summarize(root, folders, files, owner, assumed, [""] * len(files),
                                               ignored, name)
        rows = FolderRows(files, owner, report, None, lambda r: _decode(rows, root, resolution, r))
    real_read = rows.read

    def read(r):
        r = np.asarray(r, dtype=np.intp)
        rows.read_files += [rows.files[i] for i in r]
        return real_read(r)

    rows.read = read
    return rows


def _decode(rows: FolderRows, root: Path, resolution, which: np.ndarray) -> np.ndarray:
    """Decode the files of rows ``which``; a file that cannot be read is a ValueError."""
    out = np.empty((len(which), resolution[0], resolution[1], 3), np.uint8)
    for k, i in enumerate(which):
        path = rows.files[i]
        try:
            out[k], mode = images.decode_image(path, resolution)
        except ValueError as exc:
            raise ValueError(f"{exc}; a load by shard draws the split before it decodes every image, so "
                             "every image must be readable: remove the file, or load the dataset once "
                             "whole (without shard=), which skips it and writes the cache that records it"
                             ) from exc
        if mode != "RGB":
            rows.report.converted.setdefault(mode, []).append(path.relative_to(root).as_posix())
    return out


def _cached(root: Path, files: list[Path], resolution, name: str, cache_dir):
    """``(path, pixels memory map, modes, errors)`` of the whole file list's cache, or None
    when there is none or it does not fit (a whole load then rebuilds it)."""
    folder = Path(cache_dir) if cache_dir is not None else root / images.CACHE_DIRNAME
    key = images.cache_key(root, files, resolution)
    path = folder / f"{name}-{resolution[0]}x{resolution[1]}-{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            modes, errors = data["modes"], data["errors"]
        pixels = npz_memmap(path, "pixels")
    except images.CACHE_ERRORS:
        return None
    if pixels is None or images.cache_problem(pixels, modes, errors, len(files), resolution) is not None:
        return None
    return path, pixels, [str(m) for m in modes], [str(e) for e in errors]


def npz_memmap(path: Path, member: str) -> np.ndarray | None:
    """A read-only memory map of array ``member`` of an ``.npz`` written by ``np.savez``, or None
    when the member is compressed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{member}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: name and extra field lengths at 26
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: member {member} has no local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        fmt = np.lib.format
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: member {member} holds objects")
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype)
    return np.memmap(path, dtype, "r", offset=offset, shape=shape, order="F" if fortran else "C")
