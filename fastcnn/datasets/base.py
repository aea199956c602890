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

from ..shards import shard_bounds

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
    shard : fastcnn.shards.Shard or None
        Keep only these training rows (and the validation and test splits only with
        ``shard.evaluation``): what one process of a data-parallel run needs
        (``fastcnn.distributed.data_shard``). ``train_count`` and the random draws stay those
        of the whole dataset; ``get_train_data`` then takes only the shard's training indices.
        None (the default): everything.
    """

    #: the ``Shard`` held (None: everything), its first training index, and every split's size
    shard, train_offset, split_counts = None, 0, None

    def __init__(self, name, xs, ys, mode, target_names=None, split=(0.8, 0.05), seed=1234, *, shard=None):
        self._setup(name, mode, target_names, seed)
        xs, ys = _arrays(name, xs, ys)
        self._hold_split(len(xs), split, shard, lambda part, rows: (xs[rows], ys[rows]))

    def _hold_split(self, count: int, split, shard, load) -> None:
        """Split ``count`` rows at random (the generator's first draw) into train / validation /
        test and keep what ``shard`` asks for (``_hold``)."""
        if count < 3:
            raise ValueError(f"dataset {self.name!r}: needs at least 3 samples to split, got {count}")
        order = self.rng.permutation(count)
        n_train = max(1, int(count * split[0]))
        n_valid = max(1, int(count * split[1]))
        tr, va, te = np.split(order, [n_train, n_train + n_valid])
        if len(te) == 0:
            te = va
        # a split of (1.0, 0.0) leaves the validation split empty: allowed here, as it always was
        self._hold(shard, {"train": tr, "validation": va, "test": te}, load, empty_ok=True)

    def _hold(self, shard, rows: dict, load, empty_ok: bool = False) -> None:
        """Load the rows of each split that ``shard`` holds (all of them without one).

        ``rows``: split name -> the source rows of its samples, in order; ``load(split, rows)``
        returns ``(xs, ys)`` for some of them. A shard holds the training indices of its
        shards (``Shard.train_range``) and, with ``evaluation``, the validation and test splits;
        the other splits hold zero rows. ``empty_ok``: the validation and test splits may be
        empty even with the evaluation.
        """
        counts = {part: len(r) for part, r in rows.items()}
        lo, hi = (0, counts["train"]) if shard is None else shard.train_range(counts["train"])
        evaluation = shard is None or shard.evaluation
        held = {part: r[lo:hi] if part == "train" else (r if evaluation else r[:0])
                for part, r in rows.items()}
        parts = {part: load(part, r) for part, r in held.items()}
        self._set_splits(parts["train"], parts["validation"], parts["test"],
                         empty_ok=empty_ok or not evaluation)
        self.shard = shard
        self.train_offset = lo
        self.split_counts = counts

    @classmethod
    def from_splits(cls, name, train, valid, test, mode, target_names=None, seed=1234) -> ArrayDataset:
        """Build from ready-made ``(xs, ys)`` pairs, e.g. MNIST's own test set."""
        self = cls.__new__(cls)
        ArrayDataset._setup(self, name, mode, target_names, seed)
        ArrayDataset._set_splits(self, train, valid, test)
        return self

    def _set_splits(self, train, valid, test, empty_ok: bool = False) -> None:
        """Store ready-made ``(xs, ys)`` splits after checking shapes agree (``empty_ok``: the
        validation and test splits may be empty, as on a shard without them)."""
        parts = {"train": train, "validation": valid, "test": test}
        arrays = {}
        for part, (xs, ys) in parts.items():
            arrays[part] = _arrays(f"{self.name}/{part}", xs, ys)
            if len(arrays[part][0]) == 0 and not (empty_ok and part != "train"):
                raise ValueError(f"dataset {self.name!r}: the {part} split is empty")
        self.tr_xs, self.tr_ys = arrays["train"]
        self.va_xs, self.va_ys = arrays["validation"]
        self.te_xs, self.te_ys = arrays["test"]
        self.shard, self.train_offset = None, 0
        self.split_counts = {part: len(xs) for part, (xs, _) in arrays.items()}

    def _setup(self, name, mode, target_names, seed) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset {name!r}: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.name = name
        self.mode = mode
        self.target_names = target_names
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        counts = {"train": len(self.tr_xs), "validation": len(self.va_xs), "test": len(self.te_xs)}
        held = ""
        if self.shard is not None:
            lo, counts = self.train_offset, self.split_counts
            held = f", holds {self.shard}: training rows {lo}..{lo + len(self.tr_xs) - 1}"
        return (
            f"{type(self).__name__}(name={self.name!r}, mode={self.mode!r}, "
            f"input_shape={self.input_shape}, outputs={self.output_count}, "
            f"train/valid/test={counts['train']}/{counts['validation']}/{counts['test']}{held})"
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
        """Samples in the training split (all of it, also when this object holds a shard)."""
        return self.split_counts["train"] if self.shard is not None else len(self.tr_xs)

    @property
    def holds_evaluation(self) -> bool:
        """Whether the validation and test splits are loaded (always, unless a shard says not)."""
        return self.shard is None or self.shard.evaluation

    # -- the seed's accessors -----------------------------------------------
    def shuffle_train_data(self) -> np.ndarray:
        """Return a fresh permutation of the training indices."""
        return self.rng.permutation(self.train_count)

    def shuffle_shards(self, batch_size: int, chunks: int) -> list[np.ndarray]:
        """A fresh permutation of the training indices of every shard of batches of
        ``batch_size`` in ``chunks`` chunks, drawn in shard order (``fastcnn.shards``)."""
        bounds = shard_bounds(self.train_count, batch_size, chunks)
        return [lo + self.rng.permutation(hi - lo) for lo, hi in bounds]

    def get_train_data(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of the training ``indices`` (a shard: of its own rows only)."""
        if self.shard is None:
            return self.tr_xs[indices], self.tr_ys[indices]
        rows = np.asarray(indices, dtype=np.intp) - self.train_offset
        if rows.size and (rows.min() < 0 or rows.max() >= len(self.tr_xs)):
            lo = self.train_offset
            asked = rows + lo
            raise IndexError(f"dataset {self.name!r}: training rows {asked.min()}..{asked.max()} asked for, "
                             f"but it holds {self.shard}, rows {lo}..{lo + len(self.tr_xs) - 1} only")
        return self.tr_xs[rows], self.tr_ys[rows]

    def get_validate_data(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """A random sample of ``count`` validation items (all of them if fewer). Without the
        validation split (a shard of another process than rank 0): zero rows, after the same
        random draw, so that the generator stays in step with rank 0's."""
        total = len(self.va_xs) if self.holds_evaluation else self.split_counts["validation"]
        count = min(int(count), total)
        pick = self.rng.choice(total, count, replace=False)
        if not self.holds_evaluation:
            return self.va_xs[:0], self.va_ys[:0]
        return self.va_xs[pick], self.va_ys[pick]

    dataset_get_validate_data = get_validate_data  # the seed's name

    def get_test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The test split (zero rows on a shard without it)."""
        return self.te_xs, self.te_ys
