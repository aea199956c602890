"""The dataset contract the model trains on: arrays, a split, a mode, names.

A dataset holds NHWC float inputs and target rows already encoded for its
mode (one-hot rows for ``select``; domain one-hot then object one-hot for
``dual_select``; 0/1 columns for ``binary``; real columns for ``regression``).
Subclasses only load arrays and call ``ArrayDataset.__init__``.

Datasets do not print: ``CnnModel.visualize`` prints every sample line through
``fastcnn.report`` (one format for every dataset and mode), naming classes with
the dataset's ``target_names``.
"""

from __future__ import annotations

import numpy as np

MODES = ("select", "binary", "regression", "dual_select")


def _arrays(name, xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """Coerce inputs to float32 ``[n, h, w, chn]`` and targets to ``[n, outputs]``."""
    xs = np.asarray(xs, dtype=np.float32)
    ys = np.asarray(ys, dtype=np.float32)
    if xs.ndim == 3:
        xs = xs[..., None]
    if xs.ndim != 4:
        raise ValueError(f"dataset {name!r}: inputs must be [n, h, w, chn], got shape {xs.shape}")
    if ys.ndim == 1:
        ys = ys[:, None]
    if len(xs) != len(ys):
        raise ValueError(f"dataset {name!r}: {len(xs)} inputs but {len(ys)} targets")
    return xs, ys


class ArrayDataset:
    """In-memory dataset split into train / validation / test.

    Parameters
    ----------
    name : str
        Short name used in reports.
    xs : ndarray [n, h, w, chn]
        Inputs, float32.
    ys : ndarray [n, outputs]
        Targets encoded for ``mode``.
    mode : str
        Default mode: one of ``MODES``.
    target_names : list[str] or tuple[list[str], list[str]]
        Class names (for ``dual_select``: domain names, object names).
    split : (train, validation) fractions; the rest is the test set.
    seed : int
        Seeds the split shuffle and validation sampling.
    """

    def __init__(self, name, xs, ys, mode, target_names=None, split=(0.8, 0.05), seed=1234):
        self._setup(name, mode, target_names, seed)
        xs, ys = _arrays(name, xs, ys)
        if len(xs) < 3:
            raise ValueError(f"dataset {name!r}: needs at least 3 samples to split, got {len(xs)}")
        order = self.rng.permutation(len(xs))
        n_train = max(1, int(len(xs) * split[0]))
        n_valid = max(1, int(len(xs) * split[1]))
        tr, va, te = np.split(order, [n_train, n_train + n_valid])
        if len(te) == 0:
            te = va
        self.tr_xs, self.tr_ys = xs[tr], ys[tr]
        self.va_xs, self.va_ys = xs[va], ys[va]
        self.te_xs, self.te_ys = xs[te], ys[te]

    @classmethod
    def from_splits(cls, name, train, valid, test, mode, target_names=None, seed=1234) -> ArrayDataset:
        """Build from ready-made ``(xs, ys)`` pairs, e.g. MNIST's own test set."""
        self = cls.__new__(cls)
        ArrayDataset._setup(self, name, mode, target_names, seed)
        ArrayDataset._set_splits(self, train, valid, test)
        return self

    def _set_splits(self, train, valid, test) -> None:
        """Store ready-made ``(xs, ys)`` splits after checking shapes agree."""
        parts = {"train": train, "validation": valid, "test": test}
        arrays = {}
        for part, (xs, ys) in parts.items():
            arrays[part] = _arrays(f"{self.name}/{part}", xs, ys)
            if len(arrays[part][0]) == 0:
                raise ValueError(f"dataset {self.name!r}: the {part} split is empty")
        self.tr_xs, self.tr_ys = arrays["train"]
        self.va_xs, self.va_ys = arrays["validation"]
        self.te_xs, self.te_ys = arrays["test"]

    def _setup(self, name, mode, target_names, seed) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset {name!r}: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.name = name
        self.mode = mode
        self.target_names = target_names
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, mode={self.mode!r}, "
            f"input_shape={self.input_shape}, outputs={self.output_count}, "
            f"train/valid/test={len(self.tr_xs)}/{len(self.va_xs)}/{len(self.te_xs)})"
        )

    # -- shapes -------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(h, w, chn)`` of one sample."""
        return tuple(self.tr_xs.shape[1:])

    @property
    def output_count(self) -> int:
        """Width of the output layer the model adds automatically."""
        return int(self.tr_ys.shape[1])

    @property
    def dual_counts(self) -> tuple[int, int] | None:
        """``(domains, objects)`` for ``dual_select`` datasets, else None."""
        if self.mode != "dual_select" or not self.target_names:
            return None
        return len(self.target_names[0]), len(self.target_names[1])

    @property
    def train_count(self) -> int:
        return len(self.tr_xs)

    # -- the seed's accessors -----------------------------------------------
    def shuffle_train_data(self) -> np.ndarray:
        """Return a fresh permutation of the training indices."""
        return self.rng.permutation(self.train_count)

    def get_train_data(self, indices) -> tuple[np.ndarray, np.ndarray]:
        return self.tr_xs[indices], self.tr_ys[indices]

    def get_validate_data(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """A random sample of ``count`` validation items (all of them if fewer)."""
        count = min(int(count), len(self.va_xs))
        pick = self.rng.choice(len(self.va_xs), count, replace=False)
        return self.va_xs[pick], self.va_ys[pick]

    dataset_get_validate_data = get_validate_data  # the seed's name

    def get_test_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.te_xs, self.te_ys
