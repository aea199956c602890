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


def read_idx(path, magic: int, rank: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes into a uint8 array of the header's shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated: {len(data)} bytes, the header alone needs {header}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"IDX file {path} has magic number {found}, expected {magic} (wrong file?)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    size = int(np.prod(shape))
    body = len(data) - header
    if body != size:
        what = "truncated" if body < size else "longer than its header says"
        raise ValueError(f"IDX file {path} is {what}: header shape {shape} needs {size} bytes, found {body}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_pair(files: dict[str, Path], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(files[f"{prefix}_images"], *IDX_FILES[f"{prefix}_images"][1:])
    labels = read_idx(files[f"{prefix}_labels"], *IDX_FILES[f"{prefix}_labels"][1:])
    if len(images) != len(labels):
        raise ValueError(
            f"{files[prefix + '_images']} holds {len(images)} images but "
            f"{files[prefix + '_labels']} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{files[prefix + '_labels']} holds label {labels.max()}; MNIST labels are 0..9")
    return images, labels


class MnistDataset(ArrayDataset):
    """MNIST 28x28 digits ``[n, 28, 28, 1]``, one-hot targets, mode ``select``.

    Parameters
    ----------
    path : folder holding the four IDX files (raw or ``.gz``).
    normalize : scale pixels to 0..1 (``False``: the raw 0..255, for parity).
    valid_count : validation images carved from the training set.
    limit : keep at most this many training, validation and test images (quick runs).
    """

    def __init__(self, path, *, normalize: bool = True, valid_count: int = 5000, limit=None, seed=1234):
        files = find_idx_files(path)
        tr_x, tr_y = _load_pair(files, "train")
        te_x, te_y = _load_pair(files, "test")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(tr_x))
        valid_count = min(int(valid_count), max(1, len(tr_x) // 2))
        va, tr = order[:valid_count], order[valid_count:]
        if limit is not None:
            tr, va, te = tr[: int(limit)], va[: int(limit)], np.arange(min(int(limit), len(te_x)))
        else:
            te = np.arange(len(te_x))
        scale = np.float32(1 / 255) if normalize else np.float32(1)
        eye = np.eye(10, dtype=np.float32)

        def pair(xs, ys, idx):
            return xs[idx, :, :, None].astype(np.float32) * scale, eye[ys[idx]]

        self._setup("mnist", "select", list(DIGIT_NAMES), seed)
        self._set_splits(pair(tr_x, tr_y, tr), pair(tr_x, tr_y, va), pair(te_x, te_y, te))
        self.path = Path(path)
