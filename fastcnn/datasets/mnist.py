"""MNIST from its four IDX files (raw or gzipped), read from a local folder.

MNIST's own 10,000-image test set is the test set; the validation set is
carved at random from the 60,000 training images. Nothing downloads.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .base import ArrayDataset
from .digits import DIGIT_NAMES

#: role -> (file name, IDX magic number, rank)
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", 2051, 3),
    "train_labels": ("train-labels-idx1-ubyte", 2049, 1),
    "test_images": ("t10k-images-idx3-ubyte", 2051, 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 2049, 1),
}


def _candidates(folder: Path, name: str) -> list[Path]:
    """The accepted spellings of one file: raw, gzipped, and the common ``.idx3`` variant."""
    dotted = name.replace("-idx", ".idx")
    return [folder / n for n in (name, name + ".gz", dotted, dotted + ".gz")]


def find_idx_files(folder) -> dict[str, Path]:
    """Locate the four IDX files in ``folder``; a clear error lists what is missing."""
    folder = Path(folder)
    expected = ", ".join(f"{name}[.gz]" for name, _, _ in IDX_FILES.values())
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST folder {folder} does not exist; put the four IDX files ({expected}) there "
            "(fastcnn never downloads data)"
        )
    found, missing = {}, []
    for role, (name, _, _) in IDX_FILES.items():
        hits = [p for p in _candidates(folder, name) if p.is_file()]
        if hits:
            found[role] = hits[0]
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"MNIST folder {folder} lacks {', '.join(missing)} (raw or .gz); expected files: {expected} "
            "(fastcnn never downloads data)"
        )
    return found


def _check_magic(path: Path, head: bytes, magic: int, rank: int) -> tuple[int, ...]:
    """The shape in an IDX header (``head``: its first ``4 + 4 rank`` bytes, or fewer if cut)."""
    header = 4 + 4 * rank
    if len(head) < header:
        raise ValueError(f"IDX file {path} is truncated: {len(head)} bytes, the header alone needs {header}")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise ValueError(f"IDX file {path} has magic number {found}, expected {magic} (wrong file?)")
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))


def _size_error(path: Path, shape, body: int) -> ValueError:
    size = int(np.prod(shape))
    what = "truncated" if body < size else "longer than its header says"
    return ValueError(f"IDX file {path} is {what}: header shape {shape} needs {size} bytes, found {body}")


def read_idx(path, magic: int, rank: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes into a uint8 array of the header's shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    shape = _check_magic(path, data, magic, rank)
    body = len(data) - (4 + 4 * rank)
    if body != int(np.prod(shape)):
        raise _size_error(path, shape, body)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def idx_shape(path, magic: int, rank: int) -> tuple[int, ...]:
    """The shape in one IDX file's header, reading the header only (a raw file's size is
    checked against it too; a gzipped body is checked when it is read)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            shape = _check_magic(path, f.read(4 + 4 * rank), magic, rank)
        body = None if path.suffix == ".gz" else path.stat().st_size - (4 + 4 * rank)
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if body is not None and body != int(np.prod(shape)):
        raise _size_error(path, shape, body)
    return shape


#: bytes of a gzipped IDX body decompressed at a time when only some rows are kept
STREAM_BLOCK = 1 << 22


def read_idx_rows(path, magic: int, rank: int, rows) -> np.ndarray:
    """Items ``rows`` (indices along the first axis, any order) of one IDX file, uint8.

    A raw file is memory-mapped and only those rows are copied, so only their pages are
    read; a gzipped one cannot seek, so its body is decompressed block by block
    (``STREAM_BLOCK`` bytes) keeping only those rows, and never held whole.
    """
    path = Path(path)
    rows = np.asarray(rows, dtype=np.intp)
    shape = idx_shape(path, magic, rank)
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        raise ValueError(f"IDX file {path} holds {shape[0]} items; rows {rows.min()}..{rows.max()} asked for")
    header = 4 + 4 * rank
    if rows.size == 0:
        return np.empty((0, *shape[1:]), np.uint8)
    try:
        if path.suffix != ".gz":
            mapped = np.memmap(path, np.uint8, "r", offset=header, shape=shape)
            out = np.array(mapped[rows])
            del mapped
            return out
        with gzip.open(path, "rb") as f:
            f.read(header)
            return _stream_rows(f, path, shape, rows)
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc


def _stream_rows(f, path: Path, shape, rows: np.ndarray) -> np.ndarray:
    """``rows`` of an IDX body read from the open stream ``f``, one block at a time."""
    item = int(np.prod(shape[1:]))
    want = np.unique(rows)
    out = np.empty((len(want), *shape[1:]), np.uint8)
    block = max(1, STREAM_BLOCK // max(item, 1))
    done = 0
    for start in range(0, shape[0], block):
        n = min(block, shape[0] - start)
        data = f.read(n * item)
        if len(data) < n * item:
            raise _size_error(path, shape, start * item + len(data))
        stop = int(np.searchsorted(want, start + n))
        if stop > done:
            items = np.frombuffer(data, np.uint8).reshape(n, *shape[1:])
            out[done:stop] = items[want[done:stop] - start]
            done = stop
    rest = len(f.read())
    if rest:
        raise _size_error(path, shape, int(np.prod(shape)) + rest)
    return out[np.searchsorted(want, rows)]


def _labels(files: dict[str, Path], prefix: str) -> tuple[tuple[int, ...], np.ndarray]:
    """``(image shape, labels)`` of the train or test pair: the images' header, every label."""
    shape = idx_shape(files[f"{prefix}_images"], *IDX_FILES[f"{prefix}_images"][1:])
    labels = read_idx(files[f"{prefix}_labels"], *IDX_FILES[f"{prefix}_labels"][1:])
    if shape[0] != len(labels):
        raise ValueError(
            f"{files[prefix + '_images']} holds {shape[0]} images but "
            f"{files[prefix + '_labels']} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{files[prefix + '_labels']} holds label {labels.max()}; MNIST labels are 0..9")
    return shape, labels


class MnistDataset(ArrayDataset):
    """MNIST 28x28 digits ``[n, 28, 28, 1]``, one-hot targets, mode ``select``.

    Parameters
    ----------
    path : folder holding the four IDX files (raw or ``.gz``).
    normalize : scale pixels to 0..1 (``False``: the raw 0..255, for parity).
    valid_count : validation images carved from the training set.
    limit : keep at most this many training, validation and test images (quick runs).
    shard : a ``fastcnn.shards.Shard``: read only its training images (and the validation and
        test images only with ``shard.evaluation``), see ``read_idx_rows``; None: all.
    """

    def __init__(self, path, *, normalize: bool = True, valid_count: int = 5000, limit=None, seed=1234,
                 shard=None):
        files = find_idx_files(path)
        tr_shape, tr_labels = _labels(files, "train")
        te_shape, te_labels = _labels(files, "test")
        rng = np.random.default_rng(seed)
        order = rng.permutation(tr_shape[0])
        valid_count = min(int(valid_count), max(1, tr_shape[0] // 2))
        va, tr = order[:valid_count], order[valid_count:]
        if limit is not None:
            tr, va, te = tr[: int(limit)], va[: int(limit)], np.arange(min(int(limit), te_shape[0]))
        else:
            te = np.arange(te_shape[0])
        tr = np.sort(tr)  # in file order: a shard (a range of training rows) is one stretch of the file
        scale = np.float32(1 / 255) if normalize else np.float32(1)
        eye = np.eye(10, dtype=np.float32)

        def load(part, rows):
            prefix = "test" if part == "test" else "train"
            images = read_idx_rows(files[f"{prefix}_images"], *IDX_FILES[f"{prefix}_images"][1:], rows)
            labels = te_labels if part == "test" else tr_labels
            xs = images[:, :, :, None].astype(np.float32)
            xs *= scale  # in place: the same products as ``xs * scale``, one array fewer
            return xs, eye[labels[rows]]

        self._setup("mnist", "select", list(DIGIT_NAMES), seed)
        self._hold(shard, {"train": tr, "validation": va, "test": te}, load)
        self.path = Path(path)
